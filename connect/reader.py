"""The WebSocket reader: one thread per process reads every data-channel socket and parses its frames.

flask-sock does the HTTP upgrade; then the socket is handed here (simple-websocket's own reader thread is
never started). An incoming message costs one epoll wake-up in this thread and is handled right here: decoded,
checked and queued for its receivers, whose writer thread sends it on. No per-socket thread does any work.
"""
from __future__ import annotations

import logging
import selectors
import socket
from collections import deque

from connect.selectorthread import SelectorThread
from connect.wsframes import FrameError

log = logging.getLogger(__name__)
RECV_BYTES = 65536


class SocketReader(SelectorThread):
    name = "ws-reader"

    def __init__(self):
        super().__init__()
        self._adds: deque = deque()

    def add(self, conn) -> None:
        """Start reading `conn` (a connect.websocket.Connection); safe from any thread."""
        self.start()
        self._adds.append(conn)
        self._poke()

    def _run(self) -> None:
        while True:
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    self._woken()
                    while self._adds:
                        conn = self._adds.popleft()
                        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
                else:
                    self._read(key.data)

    def _read(self, conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
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
