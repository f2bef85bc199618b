"""The WebSocket writer: one thread per process drains every receiver's outbox onto its socket.

Senders never write to a receiver's socket. They queue into the receiver's outbox (meeting.outbox) and,
when it was empty, wake this thread. The writer frames everything queued for a receiver into one buffer and
writes it with one non-blocking send; a socket whose kernel buffer is full is parked on a selector until it
drains, and meanwhile its pose frames stay latest-wins in the outbox. So a stuck reader costs one parked
socket, not the room's latency.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque

from connect.selectorthread import SelectorThread
from connect.wsframes import PING_FRAME, close_frame, frame_all

log = logging.getLogger(__name__)

DONE, BLOCKED, DEAD = 0, 1, 2


class SocketWriter(SelectorThread):
    """Owns the thread that writes to every WebSocket of the process."""

    name = "ws-writer"

    def __init__(self, ping_interval: float = 25.0):
        super().__init__()
        self.ping_interval = ping_interval
        self._dirty: deque = deque()
        self._channels: set = set()
        self._removals: deque = deque()

    def add(self, channel) -> None:
        self.start()
        with self._lock:
            self._channels.add(channel)

    def remove(self, channel) -> None:
        """Forget `channel`; returns once the writer thread no longer watches its socket (so it may be closed)."""
        with self._lock:
            self._channels.discard(channel)
        done = threading.Event()
        self._removals.append((channel, done))
        self._poke()
        done.wait(1.0)

    def wake(self, channel) -> None:
        """Called by any thread when `channel` has something to write. Never blocks."""
        self._dirty.append(channel)
        if not self._wake_pending:
            self._poke()

    def _run(self) -> None:
        parked: set = set()
        next_ping = time.monotonic() + self.ping_interval
        while True:
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    self._woken()                  # before draining `_dirty`, so no wake-up is lost
                else:
                    self._sel.unregister(key.fileobj)
                    parked.discard(key.data)
                    self._dirty.append(key.data)
            dirty = self._dirty
            while dirty:
                channel = dirty.popleft()
                if channel in parked:
                    if channel.close_request is None:
                        continue                   # waits for its socket to drain
                    self._sel.unregister(channel.sock)      # being closed: no more waiting
                    parked.discard(channel)
                try:
                    if channel.flush() == BLOCKED:
                        self._sel.register(channel.sock, selectors.EVENT_WRITE, channel)
                        parked.add(channel)
                except Exception:                  # a bug with one socket must not silence every socket
                    log.exception("data channel write failed")
                    channel.fail()
            while self._removals:
                channel, done = self._removals.popleft()
                if channel in parked:
                    self._sel.unregister(channel.sock)
                    parked.discard(channel)
                done.set()
            if self.ping_interval and time.monotonic() >= next_ping:
                next_ping = time.monotonic() + self.ping_interval
                with self._lock:
                    channels = list(self._channels)
                for channel in channels:
                    channel.ping()


class WebSocketChannel:
    """A participant's data channel over a WebSocket (implements meeting.participant.DataChannel). Only the
    writer thread writes to the socket: data, control frames, and the close frame that ends it."""
    transport = "websocket"

    def __init__(self, sock: socket.socket, writer: SocketWriter, send_buffer: int = 0):
        self.sock, self.writer = sock, writer
        if send_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.lock = threading.Lock()
        self.outbox = None
        self.pending = b""
        self.closed = False                       # nothing more will be written
        self.shut = threading.Event()             # set once the socket is shut down
        self.close_request: tuple[int, str] | None = None
        self.closing_at: float | None = None      # when the close was asked for, whoever asked
        self.pong_received = True
        self._control: deque[bytes] = deque()
        self._awaiting_pong = False
        writer.add(self)

    # --- DataChannel -------------------------------------------------------------------------

    def bind(self, outbox) -> None:
        self.outbox = outbox

    def notify(self) -> None:
        self.writer.wake(self)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then a close frame, then shut the socket. Safe from any thread."""
        if self.close_request is None:
            self.closing_at = time.monotonic()
            self.close_request = (code, reason)
            self.writer.wake(self)

    # --- other threads ------------------------------------------------------------------------

    def send_control(self, frame: bytes) -> None:
        self._control.append(frame)
        self.writer.wake(self)

    # --- writer side --------------------------------------------------------------------------

    def flush(self) -> int:
        with self.lock:
            if self.closed:
                return DEAD
            closing = self.close_request         # read once: a close asked for from now on gets its own flush
            if self.pending and (result := self._send(self.pending)) != DONE:
                if result == BLOCKED and closing is not None:   # a stuck reader being closed
                    self._shutdown()
                    return DEAD
                return result
            parts = []
            while self._control:
                parts.append(self._control.popleft())
            payloads = self.outbox.drain() if self.outbox is not None else []
            if payloads:
                parts.append(frame_all(payloads))
            if closing is not None:
                parts.append(close_frame(*closing))
            if not parts:
                return DONE
            result = self._send(b"".join(parts))
            if closing is not None:
                # Only our side: the reader keeps draining until the peer's Close (RFC 6455), so unread data
                # cannot turn the ending into a reset that loses the close frame.
                self._shutdown(socket.SHUT_WR if result == DONE else socket.SHUT_RDWR)
                return DEAD
            return result

    def fail(self) -> None:
        """Writing failed unexpectedly: shut the socket, so its session ends."""
        self._shutdown()

    def ping(self) -> None:
        if self._awaiting_pong and not self.pong_received:
            self.close(1008, "ping timeout")
            return
        self.pong_received, self._awaiting_pong = False, True
        self.send_control(PING_FRAME)

    def _send(self, data: bytes) -> int:
        try:
            n = self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            n = 0
        except OSError:
            self._shutdown()
            return DEAD
        self.pending = data[n:] if n < len(data) else b""
        return BLOCKED if self.pending else DONE

    def _shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        self.closed = True
        try:
            self.sock.shutdown(how)
        except OSError:
            pass
        self.shut.set()

    # --- the connection's end -----------------------------------------------------------------

    def release(self) -> None:
        """The session is over: let the close frame go out (a moment at most), then free the socket."""
        self.shut.wait(1.0)
        with self.lock:
            self.closed = True
        self.writer.remove(self)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
