"""Bad-input drills against the live server: one table of cases (how to provoke it, the documented outcome),
one test that runs a case.

Every case runs in a fresh room of three places where two real WebSocket participants, a sender and a
receiver, are already connected. The bad input comes from a third socket (or an HTTP request); the test asserts
the outcome docs/PROTOCOL.md, docs/TOKENS.md and README.md document (the close code, or the ERROR code, or the
HTTP status and JSON `error`), and then that the server still answers GET /health and that the receiver gets a
pose frame the sender sends after the bad input.

A participant that has joined writes its bad input and then a sentinel (a second JOIN, answered with the ERROR
`not_allowed` when the connection is still open), so every outcome is read from messages, never from waiting:
the socket is closed (its close code), or ERRORs came before the sentinel's answer (the first one's code), or
only the sentinel was answered (the server took the input without a word).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from tests.minting import mint, tampered
from tests.test_live import new_room, pose_for
from tests.test_rfc6455 import close as close_frame
from tests.test_rfc6455 import frame
from tests.wsclient import MeetingClient
from wire import posedata
from wire import protocol as p

C = p.CloseCode
TEXT, BINARY, PING, CONT = 0x1, 0x2, 0x9, 0x0


# --- outcomes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Close:
    code: int | None               # the close code of the server's close frame (None: closed without one)


@dataclass(frozen=True)
class Error:
    code: str                      # the first ERROR message's code; the connection stayed open


@dataclass(frozen=True)
class Http:
    status: int
    error: str | None              # the JSON body's `error`


ACCEPTED = "accepted: no ERROR, no close"
JOINED = "joined: WELCOME"


class WrongOutcome(AssertionError):
    """The server did something else than documented."""


# --- a room with a sender and a receiver, and the bad participant's ways in ------------------------

SENTINEL = frame(BINARY, p.encode(p.Join("sentinel")))     # a second JOIN: answered with ERROR not_allowed


@dataclass
class Drill:
    server: object
    room: str
    sender: MeetingClient
    receiver: MeetingClient
    clients: list = field(default_factory=list)

    def client(self, room: str | None = None, user_id: str | None = None, join: bool = True) -> MeetingClient:
        c = MeetingClient(self.server, room or self.room, user_id, join=join)
        self.clients.append(c)
        return c if join else c.open()

    def after_join(self, raw: bytes):
        """A participant joins, then writes `raw` (WebSocket frames) and the sentinel on its socket."""
        bad = self.client()
        bad.ws.socket.sendall(raw + SENTINEL)
        return observe(bad)

    def before_join(self, first, room: str | None = None):
        """A socket opens (to `room`, the drill's by default) and sends `first` instead of a good JOIN."""
        bad = self.client(room, join=False)
        if first is not None:
            bad.send(first)
        return observe(bad)

    def api_token(self, user_id: str) -> str:
        """A join token from POST /api/meeting/join (it reserves a place)."""
        status, body = self.server.api("POST", "/api/meeting/join", {"room_id": self.room, "user_id": user_id})
        assert status == 200, body
        return body["token"]

    def api(self, method: str, path: str, body: dict) -> Http:
        status, answer = self.server.api(method, path.format(room=self.room), body)
        return Http(status, answer.get("error"))

    def raw_http(self, path: str, data: bytes, content_type: str) -> Http:
        req = urllib.request.Request(self.server.url + path.format(room=self.room), data=data, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Http(resp.status, json.loads(resp.read()).get("error"))
        except urllib.error.HTTPError as err:
            return Http(err.code, json.loads(err.read()).get("error"))


def observe(client: MeetingClient, timeout: float = 8.0):
    """What the server did with the bad input: see the module's docstring."""
    errors, deadline = [], time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            msg = client.recv(left)
            if isinstance(msg, p.Welcome):
                return JOINED
            if isinstance(msg, p.Error):
                if msg.code == "not_allowed":                      # the sentinel's answer
                    return Error(errors[0]) if errors else ACCEPTED
                errors.append(msg.code)
    except ConnectionClosed as closed:
        return Close(closed.rcvd.code if closed.rcvd else None)
    return f"nothing within {timeout} s"


@pytest.fixture
def drill(live_server):
    room = new_room(live_server, size=3)
    d = Drill(live_server, room, MeetingClient(live_server, room, "sender"), MeetingClient(live_server, room, "receiver"))
    d.clients += [d.sender, d.receiver]
    yield d
    for c in d.clients:
        c.close()


# --- how to provoke: the table's verbs -------------------------------------------------------------

Provoke = Callable[[Drill], object]


def joined(*frames: bytes) -> Provoke:
    """Raw WebSocket frames from a participant that has joined."""
    return lambda d: d.after_join(b"".join(frames))


def message(payload: bytes) -> Provoke:
    """One binary message (in one well-formed frame) from a participant that has joined."""
    return joined(frame(BINARY, payload))


def first(payload, room: Callable[[Drill], str] | None = None) -> Provoke:
    """The first message on a new socket (bytes, or a protocol message)."""
    return lambda d: d.before_join(payload(d) if callable(payload) else payload, room(d) if room else None)


def join_with(token: Callable[[Drill], str], room: Callable[[Drill], str] | None = None) -> Provoke:
    """JOIN with this token as the first message."""
    return first(lambda d: p.Join(token(d)), room)


def then(setup: Callable[[Drill], object], provoke: Provoke) -> Provoke:
    def run(d: Drill):
        setup(d)
        return provoke(d)
    return run


def post(path: str, body: Callable[[Drill], dict] | dict) -> Provoke:
    """An HTTP API request with a JSON body; `{room}` in the path is the drill's room."""
    return lambda d: d.api("POST", path, body(d) if callable(body) else body)


def post_raw(path: str, data: bytes, content_type: str = "application/json") -> Provoke:
    return lambda d: d.raw_http(path, data, content_type)


def offer(token: Callable[[Drill], str] | None, sdp: str = "", kind: str = "offer", room: str = "{room}") -> Provoke:
    """A WebRTC offer; no `token` field at all when `token` is None."""
    def body(d: Drill) -> dict:
        return {"sdp": sdp, "type": kind} | ({} if token is None else {"token": token(d)})
    return post(f"/api/meeting/{room}/rtc", body)


def pack(*fields) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def fill_room(d: Drill) -> None:
    d.client(user_id="filler")                       # the room's third and last place


KEY = posedata.encode_key(posedata.quantize({"yaw": 0.1}, 8), 8, 1, 0)    # a good 19-byte key frame
SDP_APP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
SDP_NO_APP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
ELSEWHERE = "no-such-room"


# --- the drills ------------------------------------------------------------------------------------
# (id, how to provoke it, the documented outcome).
# Tokens are minted when a case runs (lambdas), so their times are fresh.

CASES = [
    # WebSocket framing (RFC 6455; docs/PROTOCOL.md "Close codes"), raw frames after JOIN
    ("ws-unmasked-client-frame", joined(frame(BINARY, pack(1, 1, KEY), masked=False)), Close(1002)),
    ("ws-rsv1-without-extension", joined(frame(BINARY, pack(1, 1, KEY), rsv=0x40)), Close(1002)),
    ("ws-reserved-opcode-3", joined(frame(0x3, b"x")), Close(1002)),
    ("ws-reserved-control-opcode-b", joined(frame(0xB)), Close(1002)),
    ("ws-fragmented-ping", joined(frame(PING, b"p", fin=False)), Close(1002)),
    ("ws-ping-over-125-bytes", joined(frame(PING, b"x" * 126)), Close(1002)),
    ("ws-continuation-without-start", joined(frame(CONT, b"x")), Close(1002)),
    ("ws-new-message-inside-fragments", joined(frame(BINARY, b"\x93", fin=False), frame(BINARY, b"x")), Close(1002)),
    ("ws-close-one-byte-body", joined(frame(0x8, b"\x03")), Close(1002)),
    ("ws-close-code-1005", joined(close_frame(1005)), Close(1002)),
    ("ws-close-reason-not-utf8", joined(close_frame(1000, b"\xff\xfe")), Close(1007)),
    ("ws-text-frame", joined(frame(TEXT, b'{"type": "pose"}')), Close(C.UNSUPPORTED_DATA)),
    ("ws-text-frame-not-utf8", joined(frame(TEXT, b"\xff\xfe\xc3")), Close(C.UNSUPPORTED_DATA)),
    ("ws-message-over-4096-bytes", message(pack(1, 3, "x" * 5000)), Close(C.TOO_BIG)),
    ("ws-fragments-over-4096-bytes", joined(frame(BINARY, b"\x93" + b"x" * 1999, fin=False),
                                            frame(CONT, b"x" * 2000, fin=False), frame(CONT, b"x" * 2000)),
     Close(C.TOO_BIG)),
    ("ws-frame-header-says-1-mib", joined(bytes((0x82, 0xFF)) + (1 << 20).to_bytes(8, "big") + b"mask"),
     Close(C.TOO_BIG)),
    ("ws-no-join-within-timeout", first(None), Close(C.JOIN_TIMEOUT)),

    # msgpack (docs/PROTOCOL.md: strict decoding; ERROR `malformed`, the connection stays open)
    ("msgpack-garbage", message(b"\xc1\xc1\xc1"), Error("malformed")),
    ("msgpack-empty", message(b""), Error("malformed")),
    ("msgpack-truncated", message(pack(1, 1, KEY)[:-4]), Error("malformed")),
    ("msgpack-trailing-bytes", message(pack(1, 3, "hi") + b"\x00"), Error("malformed")),
    ("msgpack-top-level-map", message(msgpack.packb({"v": 1, "type": 3, "text": "hi"})), Error("malformed")),
    ("msgpack-top-level-string", message(msgpack.packb("hello")), Error("malformed")),
    ("msgpack-array-of-one", message(pack(1)), Error("malformed")),
    ("msgpack-nested-2000-deep", message(b"\x93\x01\x03" + b"\x91" * 2000 + b"\x90"), Error("malformed")),
    ("msgpack-version-not-an-int", message(pack("1", 3, "hi")), Error("malformed")),
    ("msgpack-wrong-version", message(pack(2, 1, KEY)), Close(C.UNSUPPORTED_VERSION)),
    ("msgpack-20-invalid-in-a-row", joined(*[frame(BINARY, b"\xc1")] * 20), Close(C.BAD_MESSAGES)),

    # schema: message types and fields (ERROR `unknown_type` / `invalid_field`; before JOIN a close)
    ("schema-unknown-type-99", message(pack(1, 99, "x")), Error("unknown_type")),
    ("schema-type-as-string", message(pack(1, "POSE", KEY)), Error("unknown_type")),
    ("schema-server-only-type-tier", message(pack(1, 5, 0, 30, 8, 3)), Error("unknown_type")),
    ("schema-pose-data-not-binary", message(pack(1, 1, "not bytes")), Error("invalid_field")),
    ("schema-pose-short-payload", message(pack(1, 1, KEY[:-2])), Error("invalid_field")),
    ("schema-pose-precision-flags-mismatch", message(pack(1, 1, bytes((0x80 | 3 << 5 | 1,)) + KEY[1:])),
     Error("invalid_field")),
    ("schema-pose-delta-mask-unknown-fields", message(pack(1, 1, b"\x01\x00" + (1 << 20).to_bytes(3, "little") + b"\x00")),
     Error("invalid_field")),
    ("schema-pose-with-a-slot-from-client", message(pack(1, 1, KEY, 5)), Error("invalid_field")),
    ("schema-chat-1001-chars", message(pack(1, 3, "x" * 1001)), Error("invalid_field")),
    ("schema-chat-blank", message(pack(1, 3, " \t ")), Error("invalid_field")),
    ("schema-chat-nan", message(pack(1, 3, float("nan"))), Error("invalid_field")),
    ("schema-audio-seq-65536", message(pack(1, 8, 65536, b"\xfc\x01\x02")), Error("invalid_field")),
    ("schema-audio-empty-packet", message(pack(1, 8, 0, b"")), Error("invalid_field")),
    ("schema-audio-end-reason-2", message(pack(1, 9, 2)), Error("invalid_field")),
    ("schema-audio-opus-2.5ms-frame", message(pack(1, 8, 0, b"\x80" + b"\x00" * 10)), Error("invalid_field")),
    ("schema-audio-opus-odd-length", message(pack(1, 8, 0, b"\xf9\x01\x02\x03")), Error("invalid_field")),
    ("schema-join-token-not-a-string", first(pack(1, 0, 12345)), Close(C.NOT_JOINED)),
    ("schema-join-wrong-version", first(pack(2, 0, "token")), Close(C.UNSUPPORTED_VERSION)),
    ("schema-pose-before-join", first(pack(1, 1, KEY)), Close(C.NOT_JOINED)),

    # rooms (docs/PROTOCOL.md close codes, docs/TOKENS.md; README.md's HTTP API)
    ("room-ws-does-not-exist", join_with(lambda d: mint(ELSEWHERE, "mallory"), room=lambda d: ELSEWHERE),
     Close(C.ROOM_NOT_FOUND)),
    ("room-ws-id-not-safe", join_with(lambda d: mint("<script>", "mallory"), room=lambda d: "%3Cscript%3E"),
     Close(C.ROOM_NOT_FOUND)),
    ("room-ws-full", then(fill_room, join_with(lambda d: mint(d.room, "latecomer"))), Close(C.ROOM_FULL)),
    ("room-ws-duplicate-user", join_with(lambda d: mint(d.room, "receiver")), Close(C.DUPLICATE)),
    ("room-ws-user-id-not-safe", join_with(lambda d: mint(d.room, "../../etc/passwd")), Close(C.BAD_TOKEN)),
    ("room-api-join-does-not-exist", post("/api/meeting/join", {"room_id": ELSEWHERE, "user_id": "mallory"}),
     Http(404, "room_not_found")),
    ("room-api-join-full", then(fill_room, post("/api/meeting/join", lambda d: {"room_id": d.room, "user_id": "late"})),
     Http(409, "room_full")),
    ("room-api-join-duplicate-user", post("/api/meeting/join", lambda d: {"room_id": d.room, "user_id": "receiver"}),
     Http(409, "user_already_in_room")),
    ("room-api-create-existing", post("/api/meeting/create", lambda d: {"user_id": "owner", "room_id": d.room}),
     Http(409, "room_exists")),
    ("room-api-create-id-not-safe", post("/api/meeting/create", {"user_id": "owner", "room_id": "../etc"}),
     Http(400, "bad_request")),
    ("room-api-join-user-id-not-safe", post("/api/meeting/join", lambda d: {"room_id": d.room, "user_id": "<b>x</b>"}),
     Http(400, "bad_request")),
    ("room-api-join-user-id-65-chars", post("/api/meeting/join", lambda d: {"room_id": d.room, "user_id": "u" * 65}),
     Http(400, "bad_request")),

    # join tokens (docs/TOKENS.md: a refused token closes with 4003)
    ("token-expired", join_with(lambda d: mint(d.room, "m", iat=int(time.time()) - 120, exp=int(time.time()) - 60)),
     Close(C.BAD_TOKEN)),
    ("token-not-yet-valid", join_with(lambda d: mint(d.room, "m", nbf=int(time.time()) + 60)), Close(C.BAD_TOKEN)),
    ("token-wrong-key", join_with(lambda d: mint(d.room, "m", secret="another-secret-of-at-least-32-bytes-00")),
     Close(C.BAD_TOKEN)),
    ("token-alg-none", join_with(lambda d: mint(d.room, "m", alg="none")), Close(C.BAD_TOKEN)),
    ("token-alg-hs512", join_with(lambda d: mint(d.room, "m", alg="HS512")), Close(C.BAD_TOKEN)),
    ("token-wrong-audience", join_with(lambda d: mint(d.room, "m", aud="someone-else")), Close(C.BAD_TOKEN)),
    ("token-tampered", join_with(lambda d: tampered(mint(d.room, "m"))), Close(C.BAD_TOKEN)),
    ("token-reused", join_with(lambda d: d.sender.token), Close(C.BAD_TOKEN)),
    ("token-for-another-room", join_with(lambda d: mint(new_room(d.server), "m")), Close(C.BAD_TOKEN)),
    ("token-not-a-jwt", join_with(lambda d: "not.a.token"), Close(C.BAD_TOKEN)),
    ("token-empty", first(pack(1, 0, "")), Close(C.NOT_JOINED)),

    # WebRTC signalling (docs/PROTOCOL.md "WebRTC" 2, README.md, docs/TOKENS.md)
    ("rtc-bad-sdp", offer(lambda d: d.api_token("rtc-user"), "v=0\r\nm=application nonsense\r\n"),
     Http(400, "bad_sdp")),
    ("rtc-type-answer", offer(lambda d: mint(d.room, "rtc-user"), SDP_APP, kind="answer"), Http(400, "bad_request")),
    ("rtc-without-token", offer(None, SDP_APP), Http(400, "bad_request")),
    ("rtc-no-data-channel", offer(lambda d: mint(d.room, "rtc-user"), SDP_NO_APP), Http(400, "no_data_channel")),
    ("rtc-token-for-another-room", offer(lambda d: mint(ELSEWHERE, "rtc-user"), SDP_APP), Http(403, "bad_token")),
    ("rtc-expired-token", offer(lambda d: mint(d.room, "rtc-user", exp=int(time.time()) - 1), SDP_APP),
     Http(403, "bad_token")),
    ("rtc-used-token", offer(lambda d: d.sender.token, SDP_APP), Http(403, "bad_token")),
    ("rtc-user-already-connected", offer(lambda d: mint(d.room, "receiver"), SDP_APP),
     Http(409, "user_already_in_room")),
    ("rtc-room-does-not-exist", offer(lambda d: mint(ELSEWHERE, "rtc-user"), SDP_APP, room=ELSEWHERE),
     Http(404, "room_not_found")),

    # HTTP API bodies (README.md "HTTP API": a bad field or a non-JSON body is a 400 `bad_request`)
    ("api-malformed-json", post_raw("/api/meeting/join", b'{"room_id": "x", "user_id": '), Http(400, "bad_request")),
    ("api-body-not-utf8", post_raw("/api/meeting/join", b"\xff\xfe{}"), Http(400, "bad_request")),
    ("api-wrong-content-type", post_raw("/api/meeting/create", b'{"user_id": "owner"}', "text/plain"),
     Http(400, "bad_request")),
    ("api-json-array", post_raw("/api/meeting/create", b'[{"user_id": "owner"}]'), Http(400, "bad_request")),
    ("api-missing-user-id", post("/api/meeting/join", lambda d: {"room_id": d.room}), Http(400, "bad_request")),
    ("api-max-participants-a-string", post("/api/meeting/create", {"user_id": "owner", "max_participants": "3"}),
     Http(400, "bad_request")),
    ("api-body-over-16-kib", post("/api/meeting/create", {"user_id": "owner", "pad": "x" * 20000}),
     Http(413, "request_entity_too_large")),
    # Recordings (docs/RECORDING.md)
    ("recording-bad-action", post("/api/meeting/{room}/recording", lambda d: {"token": d.sender.token,
                                                                               "action": "rewind"}),
     Http(400, "bad_request")),
    ("recording-with-a-forged-token", post("/api/meeting/{room}/recording", lambda d: {
        "token": tampered(d.sender.token), "action": "start"}), Http(403, "bad_token")),
    ("recording-stop-when-none-runs", post("/api/meeting/{room}/recording", lambda d: {"token": d.sender.token,
                                                                                        "action": "stop"}),
     Http(400, "bad_request")),
    ("recording-replay-of-none", post("/api/recordings/nothing-of-that-name/replay", lambda d: {"room_id": d.room}),
     Http(404, "recording_not_found")),
    ("recording-replay-without-room", post("/api/recordings/nothing-of-that-name/replay", {}),
     Http(400, "bad_request")),
    ("api-leave-with-another-participants-token",
     post("/api/meeting/leave", lambda d: {"room_id": d.room, "user_id": "receiver", "token": d.sender.token}),
     Http(403, "bad_token")),
]


@pytest.mark.parametrize("provoke, expected", [pytest.param(provoke, expected, id=case_id, marks=marks)
                                                for case_id, provoke, expected, *marks in CASES])
def test_drill(drill, provoke, expected):
    outcome = provoke(drill)
    with urllib.request.urlopen(drill.server.url + "/health", timeout=5) as resp:
        assert resp.status == 200, "the server is down"
    data = pose_for(drill.sender.slot, seq=42)
    drill.sender.send(p.Pose(data))
    drill.receiver.expect(p.Pose, where=lambda m: m.slot == drill.sender.slot and m.data == data)
    if outcome != expected:
        raise WrongOutcome(f"documented: {expected}; the server: {outcome}")
