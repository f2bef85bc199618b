"""The WebSocket reader: one thread per process reads every data-channel socket and parses its frames.

flask-sock does the HTTP upgrade; then the socket is handed here (simple-websocket's own reader thread is
never started). An incoming message costs one epoll wake-up in this thread and is handled right here: decoded,
checked and queued for its receivers, whose writer thread sends it on. No per-socket thread does any work.
"""
from __future__ import annotations

import heapq
import logging
import selectors
import socket
import time
from collections import deque

from connect.selectorthread import SelectorThread
from connect.wsframes import FrameError

log = logging.getLogger(__name__)
RECV_BYTES = 65536
THROTTLED_BYTES = 2048          # what a socket over its input budget gets read at a time …
PAUSE = 0.25                    # … once per this many seconds: the kernel's buffer fills and TCP stops the sender


class SocketReader(SelectorThread):
    name = "ws-reader"

    def __init__(self):
        super().__init__()
        self._adds: deque = deque()
        self._paused: list = []             # heap of (resume at, n, conn): sockets over their input budget
        self._n = 0

    def add(self, conn) -> None:
        """Start reading `conn` (a connect.websocket.Connection); safe from any thread."""
        self.start()
        self._adds.append(conn)
        self._poke()

    def _run(self) -> None:
        while True:
            timeout = 1.0 if not self._paused else max(0.0, min(1.0, self._paused[0][0] - time.monotonic()))
            for key, _ in self._sel.select(timeout=timeout):
                if key.data is None:
                    self._woken()
                    while self._adds:
                        conn = self._adds.popleft()
                        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
                else:
                    self._read(key.data)
            now = time.monotonic()
            while self._paused and self._paused[0][0] <= now:
                conn = heapq.heappop(self._paused)[2]
                if not conn.done_reading:
                    try:
                        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
                    except (OSError, ValueError, KeyError):     # closed meanwhile (its session ended)
                        pass

    def _read(self, conn) -> None:
        session = conn.session
        session.throttled = False           # set by the session when a message is over the sender's budget
        try:
            data = conn.sock.recv(THROTTLED_BYTES if conn.slow else RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            if not data:
                conn.on_eof()
            else:
                for opcode, payload in conn.parser.feed(data):
                    conn.on_frame(opcode, payload)
                    if conn.done_reading:
                        break
        except FrameError as err:                       # the byte stream is broken: no point reading on
            conn.close(err.code, err.reason)
            conn.on_eof()
        except Exception:                               # a bug in one session must not stop every socket
            log.exception("data channel failed")
            conn.close(1011, "server error")
        if conn.done_reading:
            self._sel.unregister(conn.sock)
            conn.finished.set()
        elif session.throttled:             # a flooding sender: not read again for a moment, then a little at a time
            conn.slow = True
            self._sel.unregister(conn.sock)
            self._n += 1
            heapq.heappush(self._paused, (time.monotonic() + PAUSE, self._n, conn))
        else:
            conn.slow = False
