"""What a process's rooms have carried, for monitoring: counters kept per thread (no lock on the hot path, no
update lost between threads) and summed when read."""
from __future__ import annotations

import threading
from collections import Counter


class Traffic:
    """`add("in.pose")` from any thread; `totals()` sums every thread's counts (monotonic)."""

    def __init__(self):
        self._local = threading.local()
        self._shards: list[dict[str, int]] = []
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        shard = getattr(self._local, "shard", None)
        if shard is None:
            shard = self._local.shard = {}
            with self._lock:
                self._shards.append(shard)
        shard[key] = shard.get(key, 0) + n

    def totals(self) -> Counter:
        with self._lock:
            shards = list(self._shards)
        out: Counter = Counter()
        for shard in shards:
            out.update(shard.copy())          # copy() runs without letting the owner thread in between
        return out
