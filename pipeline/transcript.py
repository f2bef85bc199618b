"""A room's transcript: speech and chat, with speaker, time and line number."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

MAX_LINES = 5000


@dataclass(frozen=True)
class Line:
    speaker: str          # user id
    name: str             # display name
    text: str
    t: float              # seconds since the epoch
    source: str           # "voice" or "chat"
    n: int = 0            # the line's number in the meeting, from 1 (minutes cite lines by it)


class Transcript:
    """Lines in the order they were said; bounded; safe to append from any thread."""

    def __init__(self, max_lines: int = MAX_LINES):
        self._lines: deque[Line] = deque(maxlen=max_lines)
        self._lock = threading.Lock()
        self._count = 0

    def add(self, speaker: str, name: str, text: str, source: str, t: float | None = None) -> Line:
        with self._lock:
            self._count += 1
            line = Line(speaker, name, text.strip(), time.time() if t is None else t, source, self._count)
            self._lines.append(line)
        return line

    def lines(self) -> list[Line]:
        with self._lock:
            return list(self._lines)

    def as_json(self) -> list[dict]:
        return [asdict(line) for line in self.lines()]
