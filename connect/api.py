"""The HTTP API under /api/meeting: JSON in, JSON out, a JSON error for every bad request."""
from __future__ import annotations

import hmac
import re
import time

from flask import Blueprint, Response, current_app, jsonify, request

from connect.rtc import RtcError
from connect.tokens import JoinClaim, TokenError
from meeting.agenda import AgendaError, parse_agenda
from meeting.errors import InvalidRequest, MeetingError, NotInRoom, RoomNotFound
from meeting.room import JitsiRoom

bp = Blueprint("api", __name__, url_prefix="/api/meeting")
minutes_bp = Blueprint("minutes", __name__, url_prefix="/api/minutes")
stats_bp = Blueprint("stats", __name__, url_prefix="/api/stats")
STATUS = {"room_exists": 409, "room_not_found": 404, "room_full": 409, "user_already_in_room": 409,
          "not_in_room": 404, "bad_request": 400, "bad_token": 403, "rtc_disabled": 404,
          "unauthorized": 401, "draining": 503, "backplane_unavailable": 503, "avatar_not_found": 404}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LANGUAGES = ("en", "zh")


class BadToken(MeetingError):
    code = "bad_token"


class RtcDisabled(MeetingError):
    code = "rtc_disabled"


class Unauthorized(MeetingError):
    code = "unauthorized"


class Draining(MeetingError):
    code = "draining"


def _not_draining() -> None:
    if _services().draining:
        raise Draining("the server is restarting: try again in a moment")


def _require_api_key() -> None:
    """With CREATE_API_KEY set, creating a room (and changing avatars and recordings) needs it: `Authorization:
    Bearer <key>` or `X-API-Key: <key>`."""
    key = _services().config["CREATE_API_KEY"]
    if not key:
        return
    auth = request.headers.get("Authorization", "")
    given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise Unauthorized("this request needs the API key (Authorization: Bearer <key>)")


def _services():
    return current_app.extensions["avatar"]


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object (Content-Type: application/json)")
    return body


def _field(body: dict, name: str, kind: type, required: bool = True):
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRequest(f"{name} must be {'an integer' if kind is int else 'a string'}")
    return value


def _avatar(body: dict, name: str) -> str:
    """A photo avatar's name from the body (it must exist: 404 avatar_not_found), or "" for the cartoon."""
    value = _field(body, name, str, required=False)
    if not value:
        return ""
    return _services().avatars.get(value).name


def _display_name(body: dict, default: str) -> str:
    name = _field(body, "display_name", str, required=False)
    if name is None:
        return default
    name = name.strip()
    if not 1 <= len(name) <= 64 or _CONTROL.search(name):
        raise InvalidRequest("display_name must be 1-64 printable characters")
    return name


@bp.errorhandler(MeetingError)
@minutes_bp.errorhandler(MeetingError)
def meeting_error(exc: MeetingError):
    return jsonify(success=False, error=exc.code, message=exc.message), STATUS.get(exc.code, 400)


@bp.post("/create")
def create():
    _require_api_key()
    _not_draining()
    body = _body()
    svc = _services()
    language = _field(body, "language", str, False) or svc.config["LANGUAGE"]
    if language not in LANGUAGES:
        raise InvalidRequest(f"language must be one of {', '.join(LANGUAGES)}")
    with_host = body.get("host", True)
    if not isinstance(with_host, bool):
        raise InvalidRequest("host must be true or false")
    try:
        items = parse_agenda(body.get("agenda"))
    except AgendaError as exc:
        raise InvalidRequest(str(exc)) from None
    host_avatar = _avatar(body, "host_avatar")
    room = svc.manager.create_room(_field(body, "user_id", str), _field(body, "room_id", str, False),
                                   _field(body, "max_participants", int, False), language=language, agenda=items,
                                   with_host=with_host and svc.config["HOST_ENABLED"], host_avatar=host_avatar)
    return jsonify(success=True, room_id=room.room_id, max_participants=room.max_participants,
                   created_by=room.created_by, language=language, agenda=_agenda(room),
                   host_avatar=room.host_avatar or None,
                   host=_host(room.room_id), page_url=f"/meeting/{room.room_id}"), 201


@bp.post("/join")
def join():
    _not_draining()
    body = _body()
    svc = _services()
    room_id, user_id = _field(body, "room_id", str), _field(body, "user_id", str)
    name = _display_name(body, user_id)
    room, member = svc.manager.join(room_id, user_id, name, avatar=_avatar(body, "avatar"))
    rtc = {"url": f"/api/meeting/{room.room_id}/rtc", "ice_servers": svc.rtc.ice} if svc.rtc else None
    token = svc.tokens.issue(room.room_id, member.user_id, member.nonce, member.display_name)
    return jsonify(success=True, room_id=room.room_id, user_id=member.user_id, display_name=member.display_name,
                   slot=member.slot, avatar=member.avatar or None, token=token,
                   ws_url=f"/ws/meeting/{room.room_id}", rtc=rtc, expires_in=svc.tokens.ttl, tier=_tier(room),
                   jitsi=svc.jitsi(room.room_id))


@bp.post("/<room_id>/rtc")
def rtc_offer(room_id: str):
    """WebRTC signalling: the browser's offer (with its data channels) for a joined participant → the answer."""
    body = _body()
    svc = _services()
    _not_draining()
    token, sdp, kind = _field(body, "token", str), _field(body, "sdp", str), _field(body, "type", str)
    if kind != "offer":
        raise InvalidRequest("type must be offer")
    if svc.rtc is None:
        raise RtcDisabled("WebRTC is turned off on this server (AVATAR_RTC_ENABLED): use the WebSocket")
    claim = _claim(token, room_id)
    svc.manager.place(room_id, claim.user_id, claim.jti, claim.display_name)   # JOIN on the channel spends it
    try:
        return jsonify(svc.rtc.answer(room_id, sdp))
    except RtcError as exc:
        return jsonify(success=False, error=exc.code, message=exc.message), exc.status


@bp.post("/leave")
def leave():
    body = _body()
    svc = _services()
    room_id, user_id, token = _field(body, "room_id", str), _field(body, "user_id", str), _field(body, "token", str)
    room = svc.manager.get_room(room_id)
    member = room.get(user_id)
    claim = _claim(token, room_id, check_expiry=False, unspent=False)    # a participant's own token, however old
    if member is None:
        raise NotInRoom(f"user {user_id!r} is not in room {room_id!r}")
    if claim.user_id != user_id or claim.jti not in member.jtis | {member.nonce}:
        raise BadToken("the token is not this participant's join token")
    channel = member.channel
    svc.manager.leave(room_id, user_id)
    if channel is not None:
        channel.close(4014, "left through the API")
    return jsonify(success=True, room_id=room_id, user_id=user_id)


@bp.get("/<room_id>")
def room_info(room_id: str):
    room = _services().manager.get_room(room_id)
    return jsonify(success=True, room_id=room.room_id, created_by=room.created_by, created_at=room.created_at,
                   started_at=room.started_at, language=room.language, agenda=_agenda(room),
                   agenda_state=room.agenda.as_json(time.monotonic()), host=_host(room_id),
                   max_participants=room.max_participants, count=room.humans, connected=room.connected_count,
                   tier=_tier(room), participants=[
                       {"user_id": m.user_id, "display_name": m.display_name, "slot": m.slot,
                        "connected": m.online, "is_host": m.is_host, "avatar": m.avatar or None}
                       for m in room.participants()])


@bp.get("")
def rooms():
    return jsonify(success=True, rooms=[
        {"room_id": r.room_id, "count": r.humans, "connected": r.connected_count,
         "max_participants": r.max_participants, "tier": _tier(r)} for r in _services().manager.rooms()])


@bp.get("/<room_id>/transcript")
def transcript(room_id: str):
    svc = _services()
    svc.manager.get_room(room_id)
    record = svc.hosts.record(room_id)
    return jsonify(success=True, room_id=room_id, lines=record.transcript.as_json() if record else [])


@bp.get("/<room_id>/minutes")
def minutes(room_id: str):
    """The meeting's minutes (JSON, or ?format=markdown): made now for an open room, kept for a closed one."""
    form = request.args.get("format", "json")
    if form not in ("json", "markdown"):
        raise InvalidRequest("format must be json or markdown")
    made = _minutes(room_id)
    if form == "markdown":
        return Response(made.markdown(), mimetype="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="minutes-{room_id}.md"'})
    return jsonify(success=True, **made.as_json())


@bp.get("/<room_id>/summary")
def summary(room_id: str):
    """The minutes' summary (kept for older clients)."""
    made = _minutes(room_id)
    return jsonify(success=True, room_id=room_id, summary=made.summary, generated_at=made.generated_at)


@stats_bp.get("")
def server_stats():
    """What this process holds now: rooms, connected participants, WebRTC peers and their messages."""
    svc = _services()
    rooms = svc.manager.rooms()
    rtc = svc.rtc.stats if svc.rtc else None
    return jsonify(success=True, rooms=len(rooms), connected=sum(r.connected_count for r in rooms),
                   rtc={"enabled": rtc is not None, "peers": rtc.peers if rtc else 0,
                        "messages_out": rtc.messages_out if rtc else 0, "messages_in": rtc.messages_in if rtc else 0})


@minutes_bp.get("")
def kept_minutes():
    """The minutes kept of rooms that emptied, newest first."""
    return jsonify(success=True, minutes=[
        {"room_id": m.room_id, "generated_at": m.generated_at, "started_at": m.started_at, "duration_s": m.duration_s,
         "participants": len(m.participants), "decisions": len(m.notes.decisions),
         "action_items": len(m.notes.action_items), "url": f"/api/meeting/{m.room_id}/minutes"}
        for m in _services().hosts.store.all()])


def _claim(token: str, room_id: str, **kw) -> JoinClaim:
    try:
        return _services().tokens.verify(token, room_id, **kw)
    except TokenError as exc:
        raise BadToken(exc.message) from None


def _minutes(room_id: str):
    svc = _services()
    made = svc.hosts.minutes(room_id)
    if made is None:
        raise RoomNotFound(f"room {room_id!r} does not exist and no minutes of it are kept")
    return made


@bp.get("/<room_id>/host")
def host_info(room_id: str):
    _services().manager.get_room(room_id)
    info = _host(room_id)
    if info is None:
        raise NotInRoom(f"room {room_id!r} has no AI host")
    record = _services().hosts.record(room_id)
    return jsonify(success=True, room_id=room_id, **info, turns=[t.as_json() for t in record.host.turns])


def _agenda(room: JitsiRoom) -> list[dict]:
    return [{"title": item.title, "minutes": item.minutes} for item in room.agenda.items]


def _host(room_id: str) -> dict | None:
    record = _services().hosts.record(room_id)
    if record is None or record.host is None:
        return None
    host = record.host
    return {"user_id": host.member.user_id, "name": host.name, "slot": host.member.slot,
            "state": host.state[0], "detail": host.state[1]}


def _tier(room: JitsiRoom) -> dict:
    t = room.tier
    return {"index": t.index, "fps": t.fps, "bits": t.bits}
