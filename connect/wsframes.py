"""WebSocket frames (RFC 6455) on the server side: parse masked client frames, build unmasked server frames.

Two parsers with one interface (`feed(bytes)` → whole messages `(opcode, payload)`, `FrameError(code)` when the
peer breaks the protocol): our own, and one over wsproto's state machine (WS_PARSER=wsproto), kept so that
bench.fanout can compare them (docs/BENCHMARKS.md).
"""
from __future__ import annotations

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_SMALL_HEADERS = tuple(bytes((0x82, n)) for n in range(126))     # FIN + binary, unmasked, short length
PING_FRAME = b"\x89\x00"


class FrameError(Exception):
    """A frame that breaks RFC 6455; `code` is the close code to answer with."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


class FrameParser:
    """Feed bytes as they arrive; get whole messages `(opcode, payload)` back. Fragmented messages are joined;
    control frames come out as they are. No extension is ever agreed, so reserved bits are an error."""

    def __init__(self, max_message: int):
        self.max_message = max_message
        self._buf = bytearray()
        self._opcode: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out, pos, n = [], 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise FrameError(1002, "reserved bits set: no extension was agreed")
            if not b1 & 0x80:
                raise FrameError(1002, "client frames must be masked")
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if length > self.max_message:
                raise FrameError(1009, f"frame over {self.max_message} bytes")
            end = pos + head + 4 + length
            if n < end:
                break
            payload = unmask(bytes(buf[pos + head + 4:end]), bytes(buf[pos + head:pos + head + 4]))
            pos = end
            message = self._message(b0 & 0x0F, bool(b0 & 0x80), payload)
            if message is not None:
                out.append(message)
        del buf[:pos]
        return out

    def _message(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG) or not fin or len(payload) > 125:
                raise FrameError(1002, "bad control frame")
            if opcode == OP_CLOSE:
                check_close(payload)
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if self._opcode is None:
                raise FrameError(1002, "continuation frame without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._opcode is not None:
                raise FrameError(1002, "new message inside a fragmented one")
            self._opcode, self._parts, self._size = opcode, [], 0
        else:
            raise FrameError(1002, f"unknown opcode {opcode}")
        self._parts.append(payload)
        self._size += len(payload)
        if self._size > self.max_message:
            raise FrameError(1009, f"message over {self.max_message} bytes")
        if not fin:
            return None
        message = (self._opcode, b"".join(self._parts))
        self._opcode, self._parts = None, []
        return message


def valid_close_code(code: int) -> bool:
    """A code a peer may send in a Close frame (RFC 6455 §7.4: never 1004-1006 or 1015, nothing unassigned)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def check_close(payload: bytes) -> None:
    """A Close frame's body is empty, or a valid code and a UTF-8 reason."""
    if len(payload) == 1:
        raise FrameError(1002, "a close frame with a one-byte body")
    if payload and not valid_close_code(int.from_bytes(payload[:2], "big")):
        raise FrameError(1002, f"invalid close code {int.from_bytes(payload[:2], 'big')}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "the close reason is not UTF-8") from None


class WsprotoParser:
    """The same interface over wsproto (its frame state machine only: the handshake was flask-sock's)."""

    def __init__(self, max_message: int):
        from wsproto.connection import Connection, ConnectionType
        self.max_message = max_message
        self._conn = Connection(ConnectionType.SERVER)
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        from wsproto.connection import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
        self._conn.receive_data(data)
        out = []
        for event in self._conn.events():
            if isinstance(event, BytesMessage | TextMessage):
                chunk = event.data if isinstance(event, BytesMessage) else event.data.encode()
                self._parts.append(chunk)
                self._size += len(chunk)
                if self._size > self.max_message:
                    raise FrameError(1009, f"message over {self.max_message} bytes")
                if event.message_finished:
                    out.append((OP_BINARY if isinstance(event, BytesMessage) else OP_TEXT, b"".join(self._parts)))
                    self._parts, self._size = [], 0
            elif isinstance(event, Ping):
                out.append((OP_PING, bytes(event.payload)))
            elif isinstance(event, Pong):
                out.append((OP_PONG, bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                if self._conn.state is not ConnectionState.REMOTE_CLOSING:   # wsproto found a protocol error
                    raise FrameError(int(event.code), event.reason or "protocol error")
                body = b"" if event.code == 1005 else int(event.code).to_bytes(2, "big") + (event.reason or "").encode()
                out.append((OP_CLOSE, body))
                break
        return out


def make_parser(kind: str, max_message: int):
    """WS_PARSER: "own" (FrameParser) or "wsproto"."""
    if kind == "wsproto":
        return WsprotoParser(max_message)
    if kind != "own":
        raise ValueError(f"WS_PARSER must be 'own' or 'wsproto', not {kind!r}")
    return FrameParser(max_message)


def frame_header(n: int, opcode: int = OP_BINARY) -> bytes:
    """The header of an unmasked server frame with an n-byte payload."""
    if opcode == OP_BINARY and n < 126:
        return _SMALL_HEADERS[n]
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big")
    return bytes((first, 127)) + n.to_bytes(8, "big")


def frame_all(payloads: list[bytes]) -> bytes:
    """Several binary messages as consecutive frames in one buffer, for one send."""
    parts = []
    for p in payloads:
        n = len(p)
        parts.append(_SMALL_HEADERS[n] if n < 126 else frame_header(n))
        parts.append(p)
    return b"".join(parts)


def close_frame(code: int, reason: str = "") -> bytes:
    body = code.to_bytes(2, "big") + reason.encode()[:120]
    return frame_header(len(body), OP_CLOSE) + body


def pong_frame(payload: bytes) -> bytes:
    return frame_header(len(payload), OP_PONG) + payload
