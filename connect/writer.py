"""The WebSocket writer: one thread per process drains every receiver's outbox onto its socket.

Senders never write to a receiver's socket. They queue into the receiver's outbox (meeting.outbox) and,
when it was empty, wake this thread. The writer frames everything queued for a receiver into one buffer and
writes it with one non-blocking send; a socket whose kernel buffer is full is parked on a selector until it
drains, and meanwhile its pose frames stay latest-wins in the outbox. So a stuck reader costs one parked
socket, not the room's latency.
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections import deque

from wsproto.events import CloseConnection

log = logging.getLogger(__name__)

_SMALL_HEADERS = tuple(bytes((0x82, n)) for n in range(126))     # FIN + binary opcode, unmasked
PING_FRAME = b"\x89\x00"
DONE, BLOCKED, DEAD = 0, 1, 2


def frame_header(n: int) -> bytes:
    """The header of an unmasked binary WebSocket frame (server to client) with an n-byte payload."""
    if n < 126:
        return _SMALL_HEADERS[n]
    if n < 65536:
        return b"\x82\x7e" + n.to_bytes(2, "big")
    return b"\x82\x7f" + n.to_bytes(8, "big")


def frame_all(payloads: list[bytes]) -> bytes:
    """Several messages as consecutive frames in one buffer, for one send."""
    parts = []
    for p in payloads:
        n = len(p)
        parts.append(_SMALL_HEADERS[n] if n < 126 else frame_header(n))
        parts.append(p)
    return b"".join(parts)


class SocketWriter:
    """Owns the thread that writes to every WebSocket of the process."""

    def __init__(self, ping_interval: float = 25.0):
        self.ping_interval = ping_interval
        self._dirty: deque = deque()
        self._wake_pending = False
        self._channels: set = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._r, selectors.EVENT_READ, None)
            self._thread = threading.Thread(target=self._run, name="ws-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._poke()
            self._thread.join(timeout=2)

    def add(self, channel) -> None:
        self.start()
        with self._lock:
            self._channels.add(channel)

    def remove(self, channel) -> None:
        with self._lock:
            self._channels.discard(channel)

    def wake(self, channel) -> None:
        """Called by any thread when `channel` has something to write. Never blocks."""
        self._dirty.append(channel)
        if not self._wake_pending:
            self._poke()

    def _poke(self) -> None:
        self._wake_pending = True
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:
            pass                                   # the pipe is full: the writer is awake anyway

    def _run(self) -> None:
        parked: set = set()
        next_ping = time.monotonic() + self.ping_interval
        while not self._stop:
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    try:
                        while os.read(self._r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    # After emptying the pipe and before draining `_dirty`: a wake() from now on pokes again,
                    # and one that came earlier has its channel in `_dirty` already. No wake-up is lost.
                    self._wake_pending = False
                else:
                    self._sel.unregister(key.fileobj)
                    parked.discard(key.data)
                    self._dirty.append(key.data)
            dirty = self._dirty
            while dirty:
                channel = dirty.popleft()
                if channel in parked:
                    continue                       # waits for its socket to drain
                if channel.flush() == BLOCKED:
                    parked.add(channel)
                    self._sel.register(channel.sock, selectors.EVENT_WRITE, channel)
            for channel in [c for c in parked if c.closed]:
                self._sel.unregister(channel.sock)
                parked.discard(channel)
            if self.ping_interval and time.monotonic() >= next_ping:
                next_ping = time.monotonic() + self.ping_interval
                with self._lock:
                    channels = list(self._channels)
                for channel in channels:
                    channel.ping()


class WebSocketChannel:
    """A participant's data channel over a flask-sock WebSocket (implements meeting.participant.DataChannel)."""

    def __init__(self, ws, writer: SocketWriter, send_buffer: int = 0):
        self.ws, self.writer = ws, writer
        # A private socket object on a dup of the descriptor: writes use MSG_DONTWAIT whatever timeout the
        # server set on its own object, and never disturb the reader thread's blocking recv.
        self.sock = socket.socket(fileno=os.dup(ws.sock.fileno()))
        if send_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.lock = threading.Lock()
        self.outbox = None
        self.pending = b""
        self.closed = False
        self.close_request: tuple[int, str] | None = None
        self.bytes_out = 0
        self._awaiting_pong = False
        writer.add(self)

    # --- DataChannel -------------------------------------------------------------------------

    def bind(self, outbox) -> None:
        self.outbox = outbox

    def notify(self) -> None:
        self.writer.wake(self)

    def close(self, code: int, reason: str) -> None:
        """Ask the session's own thread to close the socket (safe from any thread, never blocks)."""
        if self.close_request is None and not self.closed:
            self.close_request = (code, reason)
            self.ws.input_buffer.append(CLOSE_REQUEST)
            self.ws.event.set()

    # --- writer side --------------------------------------------------------------------------

    def flush(self) -> int:
        with self.lock:
            if self.closed:
                return DEAD
            if self.pending and self._send(self.pending) != DONE:
                return BLOCKED if not self.closed else DEAD
            payloads = self.outbox.drain() if self.outbox is not None else []
            if not payloads:
                return DONE
            return self._send(frame_all(payloads))

    def ping(self) -> None:
        if self._awaiting_pong and not self.ws.pong_received:
            self.close(1008, "ping timeout")
            return
        self.ws.pong_received = False
        self._awaiting_pong = True
        with self.lock:
            if not self.closed and not self.pending:
                self._send(PING_FRAME)

    def _send(self, data: bytes) -> int:
        try:
            n = self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            n = 0
        except OSError:
            self.closed = True
            return DEAD
        self.bytes_out += n
        self.pending = data[n:] if n < len(data) else b""
        return BLOCKED if self.pending else DONE

    # --- session side -------------------------------------------------------------------------

    def shutdown(self, code: int, reason: str) -> None:
        """Send a close frame (unless a half-written frame is stuck in the socket) and let go of it."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                if not self.pending and self.ws.connected:
                    self.sock.send(self.ws.ws.send(CloseConnection(code, reason[:120])), socket.MSG_DONTWAIT)
            except Exception:  # the peer is gone or the state machine is already closing
                pass
            self.ws.connected = False
        self.release()

    def release(self) -> None:
        """Stop writing; give the reader thread a moment to see the peer's close, then cut the socket."""
        self.closed = True
        self.writer.remove(self)
        thread = getattr(self.ws, "thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


CLOSE_REQUEST = object()
