"""Writes tests/golden/protocol.json: each message's fields and its bytes. Run once when the protocol changes
on purpose (`python -m tests.golden.make_golden`); the tests then pin both codecs to the file."""
import json
import pathlib
from enum import IntEnum

from wire import posedata
from wire import protocol as p

POSE_VALUES = {"yaw": 0.3, "pitch": -0.1, "roll": 0.05, "x": 0.1, "y": -0.2, "z": 0.0, "eye_l": 1.0, "eye_r": 0.9,
               "gaze_x": 0.0, "gaze_y": 0.0, "brow_l": 0.2, "brow_r": 0.2, "mouth_open": 0.4, "mouth_wide": 0.5,
               "mouth_round": 0.1, "smile": 0.3, "jaw_open": 0.35}
DELTA_VALUES = dict(POSE_VALUES, yaw=0.35, eye_l=0.0, eye_r=0.0, mouth_open=0.6)


def _pose_cases():
    out = []
    for bits in (8, 6):
        q = posedata.quantize(POSE_VALUES, bits)
        key = posedata.encode_key(q, bits, key_id=3, seq=7)
        dq = posedata.quantize(DELTA_VALUES, bits)
        delta = posedata.encode_delta(dq, q, bits, key_id=3, seq=8)
        out.append({"kind": "key", "bits": bits, "key_id": 3, "seq": 7, "values": POSE_VALUES, "q": q, "hex": key.hex()})
        out.append({"kind": "delta", "bits": bits, "key_id": 3, "seq": 8, "values": DELTA_VALUES, "q": dq,
                    "key_q": q, "hex": delta.hex()})
    return out


def _jsonable(v):
    if isinstance(v, bytes):
        return {"$bin": v.hex()}
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__}
    return int(v) if isinstance(v, IntEnum) else v


def _messages(key: bytes):
    members = (p.Member(0, "ai-host", "AI", True), p.Member(2, "alice", "Alice"))
    cases = [
        ("join", "client", p.Join("eyJyIjoiZGVtbyJ9.sig")),
        ("pose_client", "client", p.Pose(key)),
        ("chat_client", "client", p.Chat("Hello, 大家好")),
        ("pose_server", "server", p.Pose(key, slot=2)),
        ("viseme_server", "server", p.Viseme(1234, 10, 200, slot=0)),
        ("chat_server", "server", p.Chat("Hello, 大家好", slot=2, ts_ms=1763740800000)),
        ("presence_snapshot", "server", p.PresenceMsg(p.Presence.SNAPSHOT, members)),
        ("presence_left", "server", p.PresenceMsg(p.Presence.LEFT, members[1:])),
        ("presence_joined_photo", "server", p.PresenceMsg(p.Presence.JOINED,
                                                          (p.Member(3, "bob", "Bob", False, "astronaut"),))),
        ("tier", "server", p.Tier(1, 20, 7, 6)),
        ("error", "server", p.Error("invalid_field", "POSE: data must be binary")),
        ("welcome", "server", p.Welcome(2, "demo-room")),
        ("welcome_resume", "server", p.Welcome(2, "demo-room", "eyJyIjoiZGVtbyJ9.resume")),
        ("audio_client", "client", p.Audio(513, bytes.fromhex("fc0102030405"))),
        ("audio_server", "server", p.Audio(7, bytes.fromhex("fc0102030405"), slot=0, t_ms=140)),
        ("audio_end_client", "client", p.AudioStop()),
        ("audio_end_server", "server", p.AudioStop(p.AudioEnd.INTERRUPTED, slot=0)),
        ("host_status", "server", p.HostStatus(0, "loading", "loading speech model …")),
        ("recording", "server", p.Recording(True, 1796200000000, "Alice")),
        ("recording_off", "server", p.Recording(False)),
        ("bundle", "server", p.Bundle((p.encode(p.Pose(key, slot=2)), p.encode(p.Tier(1, 20, 7, 6))))),
        ("bye", "server", p.Bye(p.CloseCode.TOO_SLOW, "too slow: ordered messages piled up")),
        ("tick", "server", p.Tick(100000, 37500, 4000)),
    ]
    return [{"name": n, "direction": d, "type": type(m).__name__, "fields": _jsonable(m), "hex": p.encode(m).hex()}
            for n, d, m in cases]


def build() -> dict:
    poses = _pose_cases()
    return {"version": p.VERSION, "fields": [list(f) for f in posedata.FIELDS], "precisions": list(posedata.PRECISIONS),
            "pose_payloads": poses, "messages": _messages(bytes.fromhex(poses[0]["hex"]))}


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("protocol.json")
    path.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(path)
