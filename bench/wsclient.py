"""A minimal WebSocket client for load generation: cheap enough to run hundreds of sockets in one process.

Client frames are masked (RFC 6455 5.3), server frames must not be; all frames in a read are parsed at once.
No extensions are offered, so the server never compresses. Sockets run on `EventLoop`, a bare epoll loop with
timers: asyncio costs about 17 us of CPU per received message here, this loop about 3, and on two cores the
clients' CPU is taken from the server under test.
"""
from __future__ import annotations

import base64
import heapq
import itertools
import os
import select
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


def open_websocket(host: str, port: int, path: str, rcvbuf: int | None = None, mss: int | None = None,
                   timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect and do the opening handshake (blocking). Returns the non-blocking socket and any bytes
    that came after the handshake response."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the socket during the handshake")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {status.splitlines()[0].decode(errors='replace')}")
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock, rest


class Connection:
    """A client WebSocket on a non-blocking socket. Subclasses implement `on_binary(buf, start, length,
    now)` (read the message from `buf`, bytes or bytearray, before returning) and may implement `on_other(b0, payload)` for
    text or fragmented frames. Pings are answered; a close frame is answered and kept in `close_code`."""

    def __init__(self, sock: socket.socket, leftover: bytes = b""):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.out = b""                        # bytes the socket would not take yet
        self.close_code: int | None = None
        self.closed = False
        self.send_blocked = 0

    def send(self, payload: bytes, opcode: int = OP_BIN) -> None:
        if self.closed:
            return
        data = client_frame(payload, opcode)
        if self.out:
            self.out += data
            self.flush()
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.closed = True
            return
        if n < len(data):
            self.out = data[n:]
            self.send_blocked += 1

    def flush(self) -> None:
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self.closed = True
            return
        self.out = self.out[n:]

    def read(self, now: float) -> None:
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            self.on_lost()
            return
        self.feed(data, now)

    def feed(self, data: bytes, now: float) -> None:
        if self.buf:                          # a frame was cut by the previous read
            self.buf += data
            data = self.buf
        i, end = 0, len(data)
        while end - i >= 2:
            b0, n = data[i], data[i + 1]
            if n & 0x80:
                raise ValueError("server frames must not be masked")
            hdr = 2
            if n >= 126:
                hdr = 4 if n == 126 else 10
                if end - i < hdr:
                    break
                n = int.from_bytes(data[i + 2:i + hdr], "big")
            s = i + hdr
            if end - s < n:
                break
            if b0 == 0x82:
                self.on_binary(data, s, n, now)
            else:
                self._control(b0, bytes(data[s:s + n]))
            i = s + n
        self.buf = bytearray(data[i:]) if i < end else bytearray()

    def _control(self, b0: int, payload: bytes) -> None:
        op = b0 & 0x0F
        if op == OP_PING:
            self.send(payload, OP_PONG)
        elif op == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close(1000)
        elif op != OP_PONG:
            self.on_other(b0, payload)

    def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.send(code.to_bytes(2, "big"), OP_CLOSE)
            self.closed = True

    def on_binary(self, buf: bytearray, start: int, n: int, now: float) -> None:
        raise NotImplementedError

    def on_other(self, b0: int, payload: bytes) -> None:
        pass

    def on_lost(self) -> None:
        pass


class EventLoop:
    """epoll for reading, a heap of timers for sending. Receive times are taken once per poll: every
    socket in a batch had its data before the poll returned."""

    def __init__(self):
        self.ep = select.epoll()
        self.conns: dict[int, Connection] = {}
        self.timers: list = []
        self._seq = itertools.count()

    def add(self, conn: Connection) -> None:
        self.conns[conn.sock.fileno()] = conn
        self.ep.register(conn.sock.fileno(), select.EPOLLIN)

    def pause(self, conn: Connection) -> None:
        """Stop reading a socket (it stays open; its buffers fill)."""
        fd = conn.sock.fileno()
        if self.conns.pop(fd, None) is not None:
            self.ep.unregister(fd)

    def call_at(self, t: float, fn) -> None:
        heapq.heappush(self.timers, (t, next(self._seq), fn))

    def run_until(self, deadline: float, done=None) -> bool:
        """Run until `deadline` or until `done()` is true (checked every 50 ms); returns done()."""
        timers, conns, poll, mono = self.timers, self.conns, self.ep.poll, time.monotonic
        next_check = 0.0
        while True:
            now = mono()
            while timers and timers[0][0] <= now:
                heapq.heappop(timers)[2]()
                now = mono()
            if done is not None and now >= next_check:
                if done():
                    return True
                next_check = now + 0.05
            if now >= deadline:
                return False
            wake = min(deadline, timers[0][0] if timers else deadline, next_check if done else deadline)
            events = poll(max(0.0, wake - now))
            if events:
                now = mono()
                for fd, ev in events:
                    conn = conns.get(fd)
                    if conn is not None:
                        self.ready(conn, ev, now)
                        if conn.closed:
                            self.pause(conn)

    def ready(self, conn: Connection, ev: int, now: float) -> None:
        """A connection's socket has something to read (`ev`: its epoll events)."""
        conn.read(now)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self.pause(conn)
        self.timers.clear()
