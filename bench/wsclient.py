"""A minimal asyncio WebSocket client for load generation: cheap enough to run hundreds per process.

Client frames are masked (RFC 6455 5.3), server frames must not be; many frames are parsed per read.
No extensions are offered, so the server never compresses.
"""
from __future__ import annotations

import asyncio
import base64
import os
import socket

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(payload: bytes, opcode: int = OP_BIN) -> bytes:
    """One masked frame with FIN set."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return head + mask + masked


def parse_frames(buf: bytearray) -> tuple[list[tuple[int, int, int, int]], int]:
    """Complete frames at the start of `buf` as (opcode | FIN<<7, header length, payload start, payload
    length) and the number of bytes they take. Raises ValueError on a masked server frame."""
    out, i, end = [], 0, len(buf)
    while end - i >= 2:
        b0, b1 = buf[i], buf[i + 1]
        if b1 & 0x80:
            raise ValueError("server frames must not be masked")
        n = b1 & 0x7F
        hdr = 2
        if n == 126:
            if end - i < 4:
                break
            n, hdr = int.from_bytes(buf[i + 2:i + 4], "big"), 4
        elif n == 127:
            if end - i < 10:
                break
            n, hdr = int.from_bytes(buf[i + 2:i + 10], "big"), 10
        if end - i - hdr < n:
            break
        out.append((b0 & 0x8F, hdr, i + hdr, n))
        i += hdr + n
    return out, i


async def open_socket(host: str, port: int, path: str, protocol_factory, rcvbuf: int | None = None,
                      timeout: float = 10.0):
    """Connect, do the opening handshake, and hand the socket to an asyncio.Protocol.
    Returns (transport, protocol, leftover bytes after the handshake)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
            if not chunk:
                raise ConnectionError("the server closed the socket during the handshake")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {status.splitlines()[0].decode(errors='replace')}")
        transport, proto = await loop.connect_accepted_socket(protocol_factory, sock=sock)
        return transport, proto, rest
    except BaseException:
        sock.close()
        raise
