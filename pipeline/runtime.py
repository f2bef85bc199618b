"""One asyncio loop thread per process runs every room's AI host; models are shared through one registry."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine

from config import Settings
from pipeline.models import ModelRegistry


class HostRuntime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = ModelRegistry()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.loop is not None:
            return                                  # the common case: no lock on every audio packet
        with self._lock:
            if self._thread is not None:
                return
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(ready,), name="ai-host-loop", daemon=True)
            self._thread.start()
            ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        ready.set()
        self.loop.run_forever()

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        """Run a coroutine on the host loop from any thread."""
        self.start()
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable, *args) -> None:
        """Call `fn(*args)` on the host loop from any thread (returns at once)."""
        self.start()
        self.loop.call_soon_threadsafe(fn, *args)
