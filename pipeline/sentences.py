"""Cut the LLM's streamed reply into sentences, each emitted as soon as it ends, so speech can start early."""
from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, AsyncIterator

from pipeline.frames import ErrorFrame, LLMText, Sentence

log = logging.getLogger(__name__)

ASCII_ENDS = ".!?"
CJK_ENDS = "。！？；…"
CLOSERS = "\"'”’)]}」』）"
CUT_MARKS = ",，、;；:："
# Words that end with a dot without ending the sentence (compared lower-case, without the final dot).
ABBREVIATIONS = frozenset("e.g i.e vs dr mr mrs ms prof st jr sr inc ltd fig approx a.m p.m u.s cf al dept".split())
SOFT_LIMIT = 120                       # a run this long without an end is cut at a comma or space …
MIN_CUT = 40                           # … no earlier than this …
HARD_LIMIT = 160                       # … or anywhere once it is this long (Chinese without commas)
_MARKUP = re.compile(r"[*_#`~]+|^\s*(?:[-•]|\d+[.)])\s+", re.MULTILINE)
_WORD_BEFORE_DOT = re.compile(r"([\w.]+)\.$")


def is_cjk(ch: str) -> bool:
    """True for Chinese characters (and the other CJK ideographs)."""
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def _speakable(text: str) -> bool:
    return sum(ch.isalpha() for ch in text) >= 1


class SentenceSplitter:
    """Feed text deltas with `feed()`; it returns the sentences completed so far. `flush()` returns the rest as the
    reply's last sentence (`last=True`, its text may be empty so the end of the reply is always marked).

    A sentence ends at . ! ? (followed by a space, a newline, a Chinese character or the end), at 。！？；…, and at a
    newline. Abbreviations ("e.g.", "Dr."), initials ("J. Smith"), decimals ("3.5") and list numbers ("1.") don't end
    one. A long run without an end is cut at a comma or space after about `SOFT_LIMIT` characters.
    """

    def __init__(self, soft_limit: int = SOFT_LIMIT, first_clause: int = 0):
        """`first_clause` > 0: the reply's first piece may end at a comma once it is that long, so the voice
        can start on a short clause while the rest is still being written."""
        self.soft_limit, self.first_clause = soft_limit, first_clause
        self.reset()

    def reset(self) -> None:
        """Start a new reply: sentence indexes count from 0 again."""
        self._buf = ""
        self._index = 0

    def feed(self, text: str) -> list[Sentence]:
        self._buf += text
        out: list[Sentence] = []
        while True:
            cut = self._find_end() or self._find_cut()
            if not cut:
                return out
            sentence = self._take(cut)
            if sentence:
                out.append(sentence)

    def flush(self) -> Sentence:
        text = self._clean(self._buf)
        self._buf = ""
        sentence = Sentence(text, self._index, last=True)
        self._index = 0
        return sentence

    async def process(self, frame: LLMText | ErrorFrame) -> AsyncIterator[Sentence | ErrorFrame]:
        """Stage form: one LLM delta in, the sentences it completes out (errors pass through)."""
        if isinstance(frame, ErrorFrame):
            yield frame
            return
        for sentence in self.feed(frame.text):
            yield sentence

    async def sentences(self, deltas: AsyncIterable[LLMText | ErrorFrame]) -> AsyncIterator[Sentence | ErrorFrame]:
        """A whole reply: every delta through `process`, then the flushed last sentence."""
        self.reset()
        async for frame in deltas:
            async for out in self.process(frame):
                yield out
        yield self.flush()

    # -- internals --------------------------------------------------------------------------------------------------
    def _find_end(self) -> int:
        """Index just past the first confirmed sentence end in the buffer, or 0."""
        buf = self._buf
        i = 0
        while i < len(buf):
            ch = buf[i]
            if ch == "\n" and _speakable(buf[:i]):
                return i + 1
            if ch in ASCII_ENDS or ch in CJK_ENDS:
                j = i + 1
                while j < len(buf) and (buf[j] in ASCII_ENDS or buf[j] in CJK_ENDS or buf[j] in CLOSERS):
                    j += 1
                if j == len(buf):
                    return 0                   # wait for the next character to decide
                if self._ends_here(buf, i, j):
                    return j
                i = j
                continue
            i += 1
        return 0

    def _ends_here(self, buf: str, i: int, j: int) -> bool:
        nxt = buf[j]
        if not _speakable(buf[:i]):
            return False                       # "1." of a list, a lone "..."
        if any(c in CJK_ENDS for c in buf[i:j]):
            return True
        if not (nxt.isspace() or is_cjk(nxt)):
            return False                       # "3.5", "example.com", "Hi!there"
        if buf[i] == "." and j == i + 1:
            m = _WORD_BEFORE_DOT.search(buf[: i + 1])
            word = m.group(1).lower() if m else ""
            if word in ABBREVIATIONS or word.rstrip(".") in ABBREVIATIONS:
                return False
            if len(word) == 1 and word.isalpha() and buf[i - 1].isupper():
                return False                   # an initial: "J. Smith"
        return True

    def _find_cut(self) -> int:
        buf = self._buf
        if self._index == 0 and self.first_clause:
            for i in range(self.first_clause, len(buf) - 1):
                if buf[i - 1] in CUT_MARKS and not buf[i].isdigit():
                    return i
            if len(buf) >= 3 * self.first_clause:          # no clause mark early on: a few words will do
                k = buf.rfind(" ", 0, 3 * self.first_clause)
                if k >= self.first_clause:
                    return k + 1
        if len(buf) < self.soft_limit:
            return 0
        for marks in (CUT_MARKS, " "):
            k = max(buf.rfind(m) for m in marks)
            if k >= MIN_CUT:
                return k + 1
        return len(buf) if len(buf) >= HARD_LIMIT else 0

    def _take(self, cut: int) -> Sentence | None:
        text, self._buf = self._clean(self._buf[:cut]), self._buf[cut:]
        if not _speakable(text):
            return None                        # only punctuation or digits cut by the length limit: nothing to say
        sentence = Sentence(text, self._index)
        self._index += 1
        return sentence

    @staticmethod
    def _clean(text: str) -> str:
        """Drop markdown marks and list bullets, squeeze spaces: the TTS should not read them."""
        return " ".join(_MARKUP.sub(" ", text).split())
