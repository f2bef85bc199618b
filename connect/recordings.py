"""Recordings over HTTP: start and stop a room's (its participants, with their join token), list, download,
delete, replay into a room, and export to MP4 (docs/RECORDING.md)."""
from __future__ import annotations

import threading

from flask import Blueprint, jsonify, send_file

from connect.api import STATUS, _body, _claim, _field, _require_api_key, _services
from meeting.errors import InvalidRequest, MeetingError, NotInRoom
from meeting.recording import RecordingInfo
from meeting.replay import Replayer

bp = Blueprint("recordings", __name__)
STATUS.update({"recording_not_found": 404, "bad_recording": 422, "replay_busy": 409})
_export_lock = threading.Lock()          # one MP4 export at a time: it takes a core


@bp.errorhandler(MeetingError)
def recording_error(exc: MeetingError):
    return jsonify(success=False, error=exc.code, message=exc.message), STATUS.get(exc.code, 400)


def _store():
    return _services().recordings


def _info(r: RecordingInfo) -> dict:
    return {"id": r.id, "room_id": r.room_id, "started_at": r.started_at, "ended_at": r.ended_at,
            "duration_s": r.duration_s, "records": r.records, "bytes": r.bytes, "by": r.by,
            "url": f"/api/recordings/{r.id}", "mp4_url": f"/api/recordings/{r.id}/mp4"}


@bp.post("/api/meeting/<room_id>/recording")
def recording(room_id: str):
    """`{"token": <a participant's join token>, "action": "start" | "stop"}`: any participant may start or stop
    the room's recording; everyone sees that it runs (RECORDING)."""
    body = _body()
    action, token = _field(body, "action", str), _field(body, "token", str)
    if action not in ("start", "stop"):
        raise InvalidRequest("action must be start or stop")
    svc = _services()
    room = svc.manager.get_room(room_id)
    claim = _claim(token, room_id, check_expiry=False, unspent=False)
    member = room.get(claim.user_id)
    if member is None or claim.jti not in member.jtis | {member.nonce}:
        raise NotInRoom("only a participant of the room can start or stop its recording")
    if action == "start":
        state = room.start_recording(_store(), member.display_name)
        return jsonify(success=True, room_id=room_id, recording=True, started_ms=state.started_ms), 201
    info = room.stop_recording()
    if info is None:                               # it runs in another process: that one stops it
        return jsonify(success=True, room_id=room_id, recording=False, stopping=True), 202
    return jsonify(success=True, room_id=room_id, recording=False, **{"saved": _info(info)})


@bp.get("/api/recordings")
def listing():
    return jsonify(success=True, recordings=[_info(r) for r in _store().all()])


@bp.get("/api/recordings/<recording_id>")
def download(recording_id: str):
    path = _store().file(recording_id)
    return send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name=path.name)


@bp.delete("/api/recordings/<recording_id>")
def delete(recording_id: str):
    _require_api_key()
    _store().delete(recording_id)
    return jsonify(success=True, id=recording_id)


@bp.post("/api/recordings/<recording_id>/replay")
def replay(recording_id: str):
    """`{"room_id": …}`: the recording's participants come into that room again (as "<name> (replay)") and do
    and say what they did, in real time; `DELETE` stops it."""
    _require_api_key()
    body = _body()
    svc = _services()
    room = svc.manager.get_room(_field(body, "room_id", str))
    replayer = Replayer.start(room, _store().file(recording_id), svc.replays)
    return jsonify(success=True, id=recording_id, room_id=room.room_id, replay=replayer.as_json()), 202


@bp.delete("/api/recordings/<recording_id>/replay")
def stop_replay(recording_id: str):
    _require_api_key()
    replayer = _services().replays.get(recording_id)
    if replayer is None:
        raise NotInRoom(f"recording {recording_id!r} is not being replayed")
    replayer.stop()
    return jsonify(success=True, id=recording_id, replay=replayer.as_json())


@bp.get("/api/recordings/<recording_id>/mp4")
def mp4(recording_id: str):
    """The recording as a video: the avatar grid drawn on the server and the host's voice (H.264 + AAC, fast
    start); made on first request and kept beside the recording."""
    from pipeline.export import export_mp4
    store = _store()
    source = store.file(recording_id)
    target = source.with_suffix(".mp4")
    with _export_lock:
        if not target.exists():
            export_mp4(source, target)
    return send_file(target, mimetype="video/mp4", download_name=target.name)
