"""A room's transcript (speech and chat, with speaker and time) and its extractive summary."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass

MAX_LINES = 5000
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|[\u4e00-\u9fff]{2,}")
STOPWORDS = frozenset("""a an the and or but if then so to of in on at for with by from as is are was were be been being
it its this that these those i you he she we they me him her us them my your our their what which who whom whose
when where why how all any both each few more most other some such no nor not only own same than too very can will
just don should now do does did doing have has had having am would could there here about into over under again
further once also let lets ok okay yes yeah hi hello thanks thank please ai well like get got go going know think
one two say said i'm it's that's we're you're i'll we'll""".split())


@dataclass(frozen=True)
class Line:
    speaker: str          # user id
    name: str             # display name
    text: str
    t: float              # seconds since the epoch
    source: str           # "voice" or "chat"


class Transcript:
    """Lines in the order they were said; bounded; safe to append from any thread."""

    def __init__(self, max_lines: int = MAX_LINES):
        self._lines: deque[Line] = deque(maxlen=max_lines)
        self._lock = threading.Lock()

    def add(self, speaker: str, name: str, text: str, source: str, t: float | None = None) -> Line:
        line = Line(speaker, name, text.strip(), time.time() if t is None else t, source)
        with self._lock:
            self._lines.append(line)
        return line

    def lines(self) -> list[Line]:
        with self._lock:
            return list(self._lines)

    def as_json(self) -> list[dict]:
        return [asdict(line) for line in self.lines()]


def topics(lines: list[Line], count: int = 5) -> list[str]:
    """The most said content words: what the meeting was about."""
    words = Counter(w.lower() for ln in lines for w in _WORD.findall(ln.text) if w.lower() not in STOPWORDS)
    return [w for w, _ in words.most_common(count)]


def key_points(lines: list[Line], count: int = 3) -> list[Line]:
    """The lines that carry the most of the meeting's topic words, in the order they were said."""
    vocab = Counter(w.lower() for ln in lines for w in _WORD.findall(ln.text) if w.lower() not in STOPWORDS)

    def score(ln: Line) -> float:
        words = [w.lower() for w in _WORD.findall(ln.text) if w.lower() not in STOPWORDS]
        return sum(vocab[w] for w in set(words)) / (1 + 0.1 * len(words))

    best = sorted(lines, key=score, reverse=True)[:count]
    return [ln for ln in lines if ln in best]


def extractive_summary(lines: list[Line], language: str = "en") -> str:
    """A summary built from the transcript itself: its topics and key points. Always mentions what was said."""
    if not lines:
        return "今天的会议还没有内容。" if language == "zh" else "Nothing has been said in this meeting yet."
    subjects = ", ".join(topics(lines)) or "-"
    points = " ".join(f"{ln.name}: {ln.text.rstrip('.')}." for ln in key_points(lines))
    if language == "zh":
        return f"会议主题：{subjects}。要点：{points}"
    return f"Topics: {subjects}. Key points: {points}"
