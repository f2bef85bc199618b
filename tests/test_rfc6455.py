"""RFC 6455's rules for what a server reads, one row per rule, for both frame parsers (ours and the one over
wsproto) and over a live socket: ping/pong, fragments with control frames between them, frames split across
reads, close frames (codes, one-byte bodies, reasons that are not UTF-8), reserved opcodes and bits."""
import socket

import pytest

from connect.wsframes import FrameError, FrameParser, WsprotoParser
from wire import protocol as p

PARSERS = {"own": FrameParser, "wsproto": WsprotoParser}
MASK = b"\x11\x22\x33\x44"


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A client frame (masked unless told otherwise)."""
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | rsv | opcode,))
    size = (n if n < 126 else 126) | (0x80 if masked else 0)
    head += bytes((size,)) + (n.to_bytes(2, "big") if n >= 126 else b"")
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def close(code: int, reason: bytes = b"") -> bytes:
    return frame(0x8, code.to_bytes(2, "big") + reason)


# name -> (bytes the client sends, what the parser gives: the messages, or the close code of its FrameError)
RULES = {
    "binary": (frame(0x2, b"hi"), [(0x2, b"hi")]),
    "ping": (frame(0x9, b"are you there"), [(0x9, b"are you there")]),
    "pong": (frame(0xA, b"x"), [(0xA, b"x")]),
    "fragments_with_a_ping_between": (frame(0x2, b"ab", fin=False) + frame(0x9, b"p") + frame(0x0, b"cd", fin=False)
                                      + frame(0xA) + frame(0x0, b"ef"), [(0x9, b"p"), (0xA, b""), (0x2, b"abcdef")]),
    "close_with_a_code_and_reason": (close(1000, "bye ✓".encode()), [(0x8, (1000).to_bytes(2, "big") + "bye ✓".encode())]),
    "close_without_a_body": (frame(0x8), [(0x8, b"")]),
    "close_with_an_application_code": (close(4014), [(0x8, (4014).to_bytes(2, "big"))]),
    "close_code_999": (close(999), 1002),
    "close_code_1005_is_never_sent": (close(1005), 1002),
    "close_code_1006_is_never_sent": (close(1006), 1002),
    "close_code_2000_unassigned": (close(2000), 1002),
    "close_code_5000": (close(5000), 1002),
    "close_with_a_one_byte_body": (frame(0x8, b"\x03"), 1002),
    "close_reason_not_utf8": (close(1000, b"\xff\xfe"), 1007),
    "reserved_opcode_3": (frame(0x3, b"x"), 1002),
    "reserved_control_opcode_b": (frame(0xB), 1002),
    "rsv1_without_an_extension": (frame(0x2, b"x", rsv=0x40), 1002),
    "rsv3": (frame(0x2, b"x", rsv=0x10), 1002),
    "unmasked_client_frame": (frame(0x2, b"x", masked=False), 1002),
    "continuation_without_a_start": (frame(0x0, b"x"), 1002),
    "new_message_inside_a_fragmented_one": (frame(0x2, b"a", fin=False) + frame(0x2, b"b"), 1002),
    "fragmented_control_frame": (frame(0x9, b"p", fin=False), 1002),
    "control_frame_over_125_bytes": (frame(0x9, b"x" * 126), 1002),
    "message_over_the_limit": (frame(0x2, b"x" * 300), 1009),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("rule", RULES)
def test_frame_rules(parser, rule):
    data, expected = RULES[rule]
    reader = PARSERS[parser](256)
    if isinstance(expected, int):
        with pytest.raises(FrameError) as err:
            reader.feed(data)
        assert err.value.code == expected
    else:
        assert reader.feed(data) == expected


@pytest.mark.parametrize("parser", PARSERS)
def test_frames_split_across_reads(parser):
    data = frame(0x2, b"first") + frame(0x2, b"x" * 200) + frame(0x9, b"p")
    reader, got = PARSERS[parser](256), []
    for i in range(len(data)):                              # one byte per read
        got += reader.feed(data[i:i + 1])
    assert got == [(0x2, b"first"), (0x2, b"x" * 200), (0x9, b"p")]


@pytest.mark.parametrize("parser", PARSERS)
def test_text_is_passed_on_for_the_session_to_refuse(parser):
    """Text frames are refused by the session with 1003 (docs/PROTOCOL.md), not by the parser."""
    assert PARSERS[parser](256).feed(frame(0x1, b"hello")) == [(0x1, b"hello")]


# --- the same rules over a live socket ----------------------------------------------------------------

def open_socket(server) -> socket.socket:
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "owner", "host": False})
    room_id = body["room_id"]
    token = server.api("POST", "/api/meeting/join", {"room_id": room_id, "user_id": "raw"})[1]["token"]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall((f"GET /ws/meeting/{room_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in sock.recv(1024)
    sock.sendall(frame(0x2, p.encode(p.Join(token))))
    return sock


def read_frames(sock) -> list[tuple[int, bytes]]:
    """Server frames until the server closes the connection (server frames are unmasked)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    frames, pos = [], 0
    while pos + 2 <= len(data):
        n, head = data[pos + 1] & 0x7F, 2
        if n == 126:
            n, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        frames.append((data[pos] & 0x0F, data[pos + head:pos + head + n]))
        pos += head + n
    return frames


LIVE = {   # what the client sends after JOIN -> what the server's last frames are
    "ping_is_answered": (frame(0x9, b"hello") + close(1000), [(0xA, b"hello"), (0x8, 1000)]),
    "fragments_with_a_ping_between": (frame(0x2, p.encode(p.Chat("split"))[:3], fin=False) + frame(0x9, b"p")
                                      + frame(0x0, p.encode(p.Chat("split"))[3:]) + close(1000),
                                      [(0xA, b"p"), (0x8, 1000)]),
    "invalid_close_code": (close(1006), [(0x8, 1002)]),
    "one_byte_close_body": (frame(0x8, b"\x03"), [(0x8, 1002)]),
    "close_reason_not_utf8": (close(1000, b"\xff"), [(0x8, 1007)]),
    "reserved_opcode": (frame(0x3, b"x"), [(0x8, 1002)]),
    "reserved_bit": (frame(0x2, b"x", rsv=0x20), [(0x8, 1002)]),
    "text_frame_refused": (frame(0x1, b"hello"), [(0x8, 1003)]),
}


@pytest.mark.parametrize("rule", LIVE)
def test_rules_over_a_live_socket(live_server, rule):
    sent, expected = LIVE[rule]
    sock = open_socket(live_server)
    try:
        sock.sendall(sent)
        got = read_frames(sock)
    finally:
        sock.close()
    tail = [(op, int.from_bytes(body[:2], "big") if op == 0x8 else body) for op, body in got if op in (0x8, 0x9, 0xA)]
    assert tail[-len(expected):] == expected, got
