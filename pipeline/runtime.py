"""One asyncio loop thread per process runs every room's AI host; models are shared through one registry."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine

from pipeline.models import ModelRegistry

log = logging.getLogger(__name__)


class HostRuntime:
    def __init__(self, settings: dict):
        self.settings = settings
        self.models = ModelRegistry()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Model calls leave the loop: LLM and TTS each get one thread (neither is safe to share), ASR another.
        self.llm_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llm")
        self.tts_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")
        self.asr_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")

    def start(self) -> None:
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

    async def run_in(self, executor: concurrent.futures.Executor, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        for ex in (self.llm_executor, self.tts_executor, self.asr_executor):
            ex.shutdown(wait=False, cancel_futures=True)
