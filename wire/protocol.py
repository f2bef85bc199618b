"""The data-channel protocol: a versioned msgpack envelope, strict decoding, one error type.

Every message is a msgpack array `[version, type, ...fields]`. docs/PROTOCOL.md lists each message with its
golden bytes; tests/golden/protocol.json holds the same bytes for the Python and the browser codec.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import msgpack

from wire import posedata

VERSION = 1
MAX_MESSAGE_BYTES = 4096
MAX_CHAT_CHARS = 1000
MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 1024            # a join or resume token (a JWT: docs/TOKENS.md)
MAX_SLOT = 63
VISEME_COUNT = 15


class MsgType(IntEnum):
    JOIN = 0
    POSE = 1
    VISEME = 2
    CHAT = 3
    PRESENCE = 4
    TIER = 5
    ERROR = 6
    WELCOME = 7
    AUDIO = 8
    AUDIO_END = 9
    HOST_STATUS = 10
    BUNDLE = 11                  # several messages for one receiver in one data-channel message (WebRTC)
    BYE = 12                     # why the server ends a channel that has no close code of its own (WebRTC)
    TICK = 13                    # when the server sends the room's frames out, so senders can arrive just before
    RECORDING = 14               # the meeting is being recorded (or no longer): every page shows it while it runs


class AudioEnd(IntEnum):
    FINISHED = 0                 # the utterance is over
    INTERRUPTED = 1              # barge-in: drop whatever is still scheduled


HOST_STATES = ("loading", "listening", "thinking", "speaking", "idle", "error")
MAX_STATUS_CHARS = 200


class Presence(IntEnum):
    SNAPSHOT = 0
    JOINED = 1
    LEFT = 2


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; 4xxx are this protocol's own."""
    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003      # a text frame where binary is expected
    RESTARTING = 1012            # the server is restarting: join again in a moment
    TOO_BIG = 1009               # over MAX_MESSAGE_BYTES
    BAD_MESSAGES = 4000          # too many invalid messages in a row
    NOT_JOINED = 4001            # the first message was not JOIN
    UNSUPPORTED_VERSION = 4002
    BAD_TOKEN = 4003             # missing, forged or expired join token
    ROOM_NOT_FOUND = 4004
    JOIN_TIMEOUT = 4008
    DUPLICATE = 4009             # this user already has a channel open in the room
    ROOM_FULL = 4010             # a backend-minted token's place could not be reserved: the room is full
    TOO_SLOW = 4013              # the receiver fell too far behind on messages that must not be dropped
    LEFT = 4014                  # the participant left through the HTTP API


class ProtocolError(ValueError):
    """A message that breaks the protocol; `code` is the ERROR message's code."""

    def __init__(self, code: str, message: str, close_code: CloseCode | None = None):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


# --- messages ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Join:
    token: str


@dataclass(frozen=True, slots=True)
class Pose:
    data: bytes                   # a posedata payload
    slot: int | None = None       # the sender; set by the server


@dataclass(frozen=True, slots=True)
class Viseme:
    t_ms: int                     # position on the speaker's audio timeline
    viseme: int                   # 0..14, the Oculus viseme set (sil, PP, FF, TH, DD, kk, CH, SS, nn, RR, aa, E, I, O, U)
    weight: int                   # 0..255
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    text: str
    slot: int | None = None
    ts_ms: int | None = None      # server time, ms since the epoch


@dataclass(frozen=True, slots=True)
class Member:
    slot: int
    user_id: str
    name: str
    host: bool = False
    avatar: str = ""              # a photo avatar's name (GET /api/avatar/<name>/…); empty: the cartoon


@dataclass(frozen=True, slots=True)
class PresenceMsg:
    event: Presence
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Tier:
    tier: int
    fps: int
    bits: int
    count: int


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Welcome:
    slot: int
    room_id: str
    resume: str = ""             # a token to JOIN with again, after a dropped connection, as this same participant


@dataclass(frozen=True, slots=True)
class Audio:
    seq: int                      # 0..65535, wrapping
    data: bytes                   # one Opus packet: 48 kHz mono, 20-60 ms
    slot: int | None = None       # the speaker; set by the server
    t_ms: int | None = None       # the packet's start on the speaker's utterance timeline (server to client)


@dataclass(frozen=True, slots=True)
class AudioStop:
    reason: AudioEnd = AudioEnd.FINISHED
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class HostStatus:
    slot: int
    state: str                    # one of HOST_STATES
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Bundle:
    messages: tuple[bytes, ...]   # each an encoded message, in the order they were sent


@dataclass(frozen=True, slots=True)
class Bye:
    code: int                     # a CloseCode, as the WebSocket would close with
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    period_us: int                # the room's frame period
    next_in_us: int               # from the moment this was sent to the next send-out
    lead_us: int                  # send a pose this long before a send-out to have it in that one


@dataclass(frozen=True, slots=True)
class Recording:
    on: bool
    started_ms: int = 0           # when it started (server time, ms since the epoch); 0 when off
    by: str = ""                  # who started it (a display name)


Message = (Join | Pose | Viseme | Chat | PresenceMsg | Tier | Error | Welcome | Audio | AudioStop | HostStatus | Bundle
           | Bye | Tick | Recording)
MAX_BUNDLE = 64                   # messages in one bundle


def encode(msg: Message) -> bytes:
    """Any message -> bytes. Server-side fields (slot, ts_ms) are written only when set."""
    return msgpack.packb(_fields(msg), use_bin_type=True)


def _fields(msg: Message) -> list:
    match msg:
        case Join(token):
            return [VERSION, MsgType.JOIN, token]
        case Pose(data, slot):
            return [VERSION, MsgType.POSE, data] + _opt(slot)
        case Viseme(t_ms, viseme, weight, slot):
            return [VERSION, MsgType.VISEME, t_ms, viseme, weight] + _opt(slot)
        case Chat(text, slot, ts_ms):
            return [VERSION, MsgType.CHAT, text] + ([slot, ts_ms] if slot is not None else [])
        case PresenceMsg(event, members):
            return [VERSION, MsgType.PRESENCE, int(event),
                    [[m.slot, m.user_id, m.name, int(m.host)] + ([m.avatar] if m.avatar else []) for m in members]]
        case Tier(tier, fps, bits, count):
            return [VERSION, MsgType.TIER, tier, fps, bits, count]
        case Error(code, message):
            return [VERSION, MsgType.ERROR, code, message]
        case Welcome(slot, room_id, resume):
            return [VERSION, MsgType.WELCOME, slot, room_id] + ([resume] if resume else [])
        case Audio(seq, data, slot, t_ms):
            return [VERSION, MsgType.AUDIO, seq, data] + ([slot, t_ms] if slot is not None else [])
        case AudioStop(reason, slot):
            return [VERSION, MsgType.AUDIO_END, int(reason)] + _opt(slot)
        case HostStatus(slot, state, detail):
            return [VERSION, MsgType.HOST_STATUS, slot, state, detail]
        case Bundle(messages):
            return [VERSION, MsgType.BUNDLE, list(messages)]
        case Bye(code, reason):
            return [VERSION, MsgType.BYE, int(code), reason]
        case Tick(period_us, next_in_us, lead_us):
            return [VERSION, MsgType.TICK, period_us, next_in_us, lead_us]
        case Recording(on, started_ms, by):
            return [VERSION, MsgType.RECORDING, int(on), started_ms, by]
    raise TypeError(f"not a protocol message: {msg!r}")


def _opt(slot: int | None) -> list:
    return [] if slot is None else [slot]


def bundle(messages: list[bytes]) -> bytes:
    """Encoded messages in one BUNDLE (at most MAX_BUNDLE; a bundle is one message, so it keeps the size limit)."""
    return msgpack.packb([VERSION, MsgType.BUNDLE, messages], use_bin_type=True)


def unbundle(data: bytes) -> list[Message]:
    """A server's data-channel message, decoded: a BUNDLE's messages, or the one message it is."""
    msg = decode_server(data)
    return [decode_server(m) for m in msg.messages] if isinstance(msg, Bundle) else [msg]


def relay_pose(data: bytes, slot: int) -> bytes:
    """The hot path: a validated pose payload stamped with its sender, encoded once for every receiver."""
    return msgpack.packb([VERSION, MsgType.POSE, data, slot], use_bin_type=True)


# --- strict decoding ---------------------------------------------------------------------------

_CLIENT_TYPES = {MsgType.JOIN, MsgType.POSE, MsgType.CHAT, MsgType.AUDIO, MsgType.AUDIO_END}


def decode_client(data: bytes | bytearray) -> Message:
    """A message a participant sent: JOIN, POSE, CHAT, AUDIO or AUDIO_END, without server-side fields."""
    return _decode(data, from_server=False)


def decode_server(data: bytes | bytearray) -> Message:
    """A message the server sent (for clients, tests and benchmarks)."""
    return _decode(data, from_server=True)


def _decode(data: bytes | bytearray, from_server: bool) -> Message:
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("text_frame", "messages are binary msgpack", CloseCode.UNSUPPORTED_DATA)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message over {MAX_MESSAGE_BYTES} bytes", CloseCode.TOO_BIG)
    try:
        arr = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, max_str_len=MAX_MESSAGE_BYTES,
                              max_bin_len=MAX_MESSAGE_BYTES, max_array_len=64, max_map_len=16, max_ext_len=0)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError, UnicodeDecodeError)
        raise ProtocolError("malformed", f"not a msgpack message: {exc.__class__.__name__}") from None
    if not isinstance(arr, list) or len(arr) < 2:
        raise ProtocolError("malformed", "a message is an array [version, type, ...]")
    version, mtype = arr[0], arr[1]
    if not _is_int(version):
        raise ProtocolError("malformed", "version must be an integer")
    if version != VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {version} is not {VERSION}",
                            CloseCode.UNSUPPORTED_VERSION)
    if not _is_int(mtype) or mtype not in MsgType._value2member_map_:
        raise ProtocolError("unknown_type", f"unknown message type {mtype!r}")
    mtype = MsgType(mtype)
    if not from_server and mtype not in _CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"clients do not send {mtype.name} messages")
    return _PARSERS[mtype](_Fields(arr[2:], mtype.name), from_server)


class _Fields:
    """Reads an array's fields in order, each with a type and range check."""

    def __init__(self, values: list, what: str):
        self.values, self.what, self.i = values, what, 0

    def _next(self, name: str):
        if self.i >= len(self.values):
            raise ProtocolError("invalid_field", f"{self.what}: missing {name}")
        self.i += 1
        return self.values[self.i - 1]

    def int(self, name: str, lo: int, hi: int) -> int:
        v = self._next(name)
        if not _is_int(v):
            kind = "NaN" if isinstance(v, float) and math.isnan(v) else type(v).__name__
            raise ProtocolError("invalid_field", f"{self.what}: {name} must be an integer, not {kind}")
        if not lo <= v <= hi:
            raise ProtocolError("invalid_field", f"{self.what}: {name}={v} is outside {lo}..{hi}")
        return v

    def str(self, name: str, max_chars: int, min_chars: int = 1) -> str:
        v = self._next(name)
        if not isinstance(v, str) or not min_chars <= len(v) <= max_chars:
            raise ProtocolError("invalid_field", f"{self.what}: {name} must be text of {min_chars}..{max_chars} characters")
        return v

    def bin(self, name: str) -> bytes:
        v = self._next(name)
        if not isinstance(v, bytes):
            raise ProtocolError("invalid_field", f"{self.what}: {name} must be binary")
        return v

    def list(self, name: str, max_len: int) -> list:
        v = self._next(name)
        if not isinstance(v, list) or len(v) > max_len:
            raise ProtocolError("invalid_field", f"{self.what}: {name} must be a list of at most {max_len}")
        return v

    def more(self) -> bool:
        """Whether an optional trailing field follows."""
        return self.i < len(self.values)

    def done(self) -> None:
        if self.i != len(self.values):
            raise ProtocolError("invalid_field", f"{self.what}: {len(self.values) - self.i} unexpected extra fields")


def _is_int(v) -> bool:
    return type(v) is int


_TS_MAX = 1 << 53


def _join(f: _Fields, server: bool) -> Join:
    token = f.str("token", MAX_TOKEN_CHARS)
    f.done()
    return Join(token)


def _pose(f: _Fields, server: bool) -> Pose:
    data = f.bin("data")
    try:
        posedata.validate(data)
    except posedata.PoseDataError as exc:
        raise ProtocolError("invalid_field", f"POSE: {exc}") from None
    slot = f.int("slot", 0, MAX_SLOT) if server else None
    f.done()
    return Pose(data, slot)


def _viseme(f: _Fields, server: bool) -> Viseme:
    msg = Viseme(f.int("t_ms", 0, _TS_MAX), f.int("viseme", 0, VISEME_COUNT - 1), f.int("weight", 0, 255),
                 f.int("slot", 0, MAX_SLOT) if server else None)
    f.done()
    return msg


def _chat(f: _Fields, server: bool) -> Chat:
    text = f.str("text", MAX_CHAT_CHARS)
    if not text.strip():
        raise ProtocolError("invalid_field", "CHAT: text is blank")
    msg = Chat(text, f.int("slot", 0, MAX_SLOT), f.int("ts_ms", 0, _TS_MAX)) if server else Chat(text)
    f.done()
    return msg


def _presence(f: _Fields, server: bool) -> PresenceMsg:
    event = Presence(f.int("event", 0, 2))
    members = []
    for item in f.list("members", MAX_SLOT + 1):
        m = _Fields(item if isinstance(item, list) else [None], "PRESENCE member")
        members.append(Member(m.int("slot", 0, MAX_SLOT), m.str("user_id", MAX_ID_CHARS),
                              m.str("name", MAX_ID_CHARS), bool(m.int("host", 0, 1)),
                              m.str("avatar", MAX_ID_CHARS) if m.more() else ""))
        m.done()
    f.done()
    return PresenceMsg(event, tuple(members))


def _tier(f: _Fields, server: bool) -> Tier:
    msg = Tier(f.int("tier", 0, 15), f.int("fps", 1, 120), f.int("bits", 5, 8), f.int("count", 0, 1024))
    f.done()
    return msg


def _error(f: _Fields, server: bool) -> Error:
    msg = Error(f.str("code", 64), f.str("message", 1000, 0))
    f.done()
    return msg


def _welcome(f: _Fields, server: bool) -> Welcome:
    msg = Welcome(f.int("slot", 0, MAX_SLOT), f.str("room_id", MAX_ID_CHARS),
                  f.str("resume", MAX_TOKEN_CHARS) if f.more() else "")
    f.done()
    return msg


def _audio(f: _Fields, server: bool) -> Audio:
    seq, data = f.int("seq", 0, 65535), f.bin("data")
    if not data:
        raise ProtocolError("invalid_field", "AUDIO: empty packet")
    ms = opus_packet_ms(data)
    if ms is None or not 20 <= ms <= 60:
        raise ProtocolError("invalid_field", "AUDIO: not one Opus packet of 20-60 ms" if ms is None
                            else f"AUDIO: an Opus packet of {ms:g} ms (20-60 ms)")
    msg = Audio(seq, data, f.int("slot", 0, MAX_SLOT), f.int("t_ms", 0, _TS_MAX)) if server else Audio(seq, data)
    f.done()
    return msg


_OPUS_FRAME_MS = [(10, 20, 40, 60)[c % 4] for c in range(12)] + [(10, 20)[c % 2] for c in range(12, 16)] + \
                 [(2.5, 5, 10, 20)[c % 4] for c in range(16, 32)]


def opus_packet_ms(packet: bytes) -> float | None:
    """An Opus packet's duration from its TOC byte and frame framing (RFC 6716 3.1-3.2); None when the framing
    is not that of one packet. The audio itself is not decoded."""
    toc, body = packet[0], len(packet) - 1
    frame_ms, code = _OPUS_FRAME_MS[toc >> 3], toc & 3
    if code == 0:
        return frame_ms
    if code == 1:
        return 2 * frame_ms if body % 2 == 0 else None
    if code == 2:
        if body < 1:
            return None
        first = packet[1] if packet[1] < 252 else (None if body < 2 else packet[1] + 4 * packet[2])
        size_bytes = 1 if packet[1] < 252 else 2
        return 2 * frame_ms if first is not None and first <= body - size_bytes else None
    if body < 1 or packet[1] & 0x3F == 0:
        return None
    count = packet[1] & 0x3F
    return count * frame_ms if count * frame_ms <= 120 else None


def _audio_end(f: _Fields, server: bool) -> AudioStop:
    msg = AudioStop(AudioEnd(f.int("reason", 0, 1)), f.int("slot", 0, MAX_SLOT) if server else None)
    f.done()
    return msg


def _host_status(f: _Fields, server: bool) -> HostStatus:
    slot, state, detail = f.int("slot", 0, MAX_SLOT), f.str("state", 16), f.str("detail", MAX_STATUS_CHARS, 0)
    if state not in HOST_STATES:
        raise ProtocolError("invalid_field", f"HOST_STATUS: unknown state {state!r}")
    f.done()
    return HostStatus(slot, state, detail)


def _bundle(f: _Fields, server: bool) -> Bundle:
    items = f.list("messages", MAX_BUNDLE)
    if not items or not all(isinstance(m, bytes) and m for m in items):
        raise ProtocolError("invalid_field", "BUNDLE: messages must be 1..64 encoded messages")
    f.done()
    return Bundle(tuple(items))


def _bye(f: _Fields, server: bool) -> Bye:
    msg = Bye(f.int("code", 1000, 4999), f.str("reason", 200, 0))
    f.done()
    return msg


def _tick(f: _Fields, server: bool) -> Tick:
    msg = Tick(f.int("period_us", 1000, 1_000_000), f.int("next_in_us", 0, 1_000_000), f.int("lead_us", 0, 1_000_000))
    f.done()
    return msg


def _recording(f: _Fields, server: bool) -> Recording:
    msg = Recording(bool(f.int("on", 0, 1)), f.int("started_ms", 0, _TS_MAX), f.str("by", 64, 0))
    f.done()
    return msg


_PARSERS = {MsgType.JOIN: _join, MsgType.POSE: _pose, MsgType.VISEME: _viseme, MsgType.CHAT: _chat,
            MsgType.PRESENCE: _presence, MsgType.TIER: _tier, MsgType.ERROR: _error, MsgType.WELCOME: _welcome,
            MsgType.AUDIO: _audio, MsgType.AUDIO_END: _audio_end, MsgType.HOST_STATUS: _host_status,
            MsgType.BUNDLE: _bundle, MsgType.BYE: _bye, MsgType.TICK: _tick, MsgType.RECORDING: _recording}
