"""Models load once per process, lazily, and are shared by every room; loading reports its progress."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)
_on_load: ContextVar[Callable[[], None] | None] = ContextVar("on_load", default=None)


@contextlib.contextmanager
def on_load(callback: Callable[[], None]) -> Iterator[None]:
    """Within this block (on this thread or task), `callback()` is called before a model really loads."""
    token = _on_load.set(callback)
    try:
        yield
    finally:
        _on_load.reset(token)


class ModelRegistry:
    """`get(key, loader)` returns the one instance for `key`, loading it on first use (other callers wait)."""

    def __init__(self):
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.load_seconds: dict[str, float] = {}

    def get(self, key: str, loader: Callable[[], Any], what: str | None = None) -> Any:
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            model = self._models.get(key)
            if model is None:
                if (notify := _on_load.get()) is not None:
                    notify()
                t0 = time.monotonic()
                model = loader()
                self.load_seconds[key] = time.monotonic() - t0
                self._models[key] = model
                log.info("loaded %s in %.2f s", what or key, self.load_seconds[key])
        return model

    def loaded(self, key: str) -> bool:
        return key in self._models

    def known(self) -> list[str]:
        """Every model asked for so far (loaded or loading)."""
        with self._lock:
            return sorted(self._locks)


def package_dir(name: str) -> pathlib.Path:
    """A package's folder, found without importing it (some packages' __init__ import heavy things)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{name} is not installed")
    return pathlib.Path(spec.origin).parent


def join_parts(path: pathlib.Path, parts: list[pathlib.Path]) -> pathlib.Path:
    """`path` holds the parts of a split model file one after another; made once and reused while its size is
    right. Written to a temporary name and renamed, so a crash or a racing process leaves no half file."""
    size = sum(p.stat().st_size for p in parts)
    if path.is_file() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in parts:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    if len(parts) > 1:
        log.info("joined %d parts into %s in %.2f s", len(parts), path, time.monotonic() - t0)
    return path
