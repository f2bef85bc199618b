"""Which transcript lines an answer's prompt carries, chosen so that one prompt extends the one before it.

An embedded model (llama.cpp) keeps the previous prompt's KV cache and only computes the tokens after the
longest shared prefix. A rolling "last 12 lines" window changes its first line at every question, so every
question paid for the whole transcript again (SmolLM2 on one core: ~950 ms to the first token with 12 lines,
~155 ms when only the new lines are new). The window's start therefore stays where it is while lines are
added, and jumps ahead only when the window is full, keeping the newest `keep` lines.
"""
from __future__ import annotations

from collections.abc import Sequence

from pipeline.transcript import Line


class ContextWindow:
    def __init__(self, max_lines: int = 12, max_chars: int = 1500, keep: int = 6):
        if not 0 < keep <= max_lines:
            raise ValueError("need 0 < keep <= max_lines")
        self.max_lines, self.max_chars, self.keep = max_lines, max_chars, keep
        self._first: Line | None = None              # the window's first line, found again by identity

    def select(self, lines: Sequence[Line]) -> list[Line]:
        """The window over `lines` (oldest first; the caller's own filtering must stay the same each time)."""
        start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i] is self._first), None)
        window = list(lines[start:]) if start is not None else []
        if not window or not self._fits(window):
            window = list(lines[-self.keep:])
            while window and not self._fits(window):
                window.pop(0)
        self._first = window[0] if window else None
        return window

    def _fits(self, window: list[Line]) -> bool:
        return len(window) <= self.max_lines and sum(len(_text(ln)) + 1 for ln in window) <= self.max_chars


def format_lines(lines: Sequence[Line]) -> list[str]:
    """'Name: text' per line, as the prompt shows them."""
    return [_text(ln) for ln in lines]


def _text(line: Line) -> str:
    return f"{line.name}: {line.text}"
