"""A daemon thread around one selector, which other threads wake through a pipe (the reader and the writer)."""
from __future__ import annotations

import os
import selectors
import threading


class SelectorThread:
    name = "selector"

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake_pending = False

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._r, selectors.EVENT_READ, None)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _poke(self) -> None:
        """Wake the thread (from any thread; never blocks)."""
        self._wake_pending = True
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:
            pass                                   # the pipe is full: the thread is awake anyway

    def _woken(self) -> None:
        """On the thread, for the pipe's selector event: empty the pipe, then take wake-ups again. A wake-up
        that came before this has queued its work already; one that comes after pokes again. None is lost."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        self._wake_pending = False
