"""A minimal asyncio WebSocket client for load generation: cheap enough to run hundreds per process.

Client frames are masked (RFC 6455 5.3), server frames must not be; many frames are parsed per read.
No extensions are offered, so the server never compresses.
"""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

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


async def open_socket(host: str, port: int, path: str, protocol_factory, rcvbuf: int | None = None,
                      mss: int | None = None, timeout: float = 10.0):
    """Connect, do the opening handshake, and hand the socket to an asyncio.Protocol.
    Returns (transport, protocol, leftover bytes after the handshake)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
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


class WSProtocol(asyncio.Protocol):
    """Frames in, hooks out: `on_binary(buf, start, length, now)` for each binary message (read it from
    `buf` before returning), `on_other(opcode, payload)` for text/fragmented frames. Pings are answered,
    a close frame is answered and recorded in `close_code`."""

    def __init__(self):
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost = True

    def send(self, payload: bytes, opcode: int = OP_BIN) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload, opcode))

    def close(self, code: int = 1000) -> None:
        self.send(code.to_bytes(2, "big"), OP_CLOSE)
        if self.transport is not None:
            self.transport.close()

    def on_binary(self, buf: bytearray, start: int, n: int, now: float) -> None:
        raise NotImplementedError

    def on_other(self, opcode: int, payload: bytes) -> None:
        pass

    def data_received(self, data: bytes, now: float | None = None) -> None:
        buf = self.buf
        buf += data
        now = time.monotonic() if now is None else now
        i, end = 0, len(buf)
        while end - i >= 2:
            b0, n = buf[i], buf[i + 1]
            if n & 0x80:
                raise ValueError("server frames must not be masked")
            hdr = 2
            if n >= 126:
                hdr = 4 if n == 126 else 10
                if end - i < hdr:
                    break
                n = int.from_bytes(buf[i + 2:i + hdr], "big")
            s = i + hdr
            if end - s < n:
                break
            if b0 == 0x82:
                self.on_binary(buf, s, n, now)
            else:
                self._control(b0, bytes(buf[s:s + n]))
            i = s + n
        if i:
            del buf[:i]

    def _control(self, b0: int, payload: bytes) -> None:
        op = b0 & 0x0F
        if op == OP_PING:
            self.send(payload, OP_PONG)
        elif op == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.transport is not None and not self.transport.is_closing():
                self.close(self.close_code if self.close_code < 1004 or self.close_code >= 3000 else 1000)
        elif op != OP_PONG:
            self.on_other(b0, payload)
