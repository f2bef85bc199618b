"""Is the AI host being addressed, and what is asked? "@AI …" in chat, or its name first when spoken."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    text: str             # what is asked, without the address
    intent: str           # "summary" or "ask"


def _name_pattern(name: str) -> str:
    if name.lower() in ("ai", "a.i."):
        # Speech recognisers write the spoken "AI" as AI, A.I., A I, Ai, or "hey I"
        return r"(?:a\.?\s?i\.?|ay\s?eye)"
    return re.escape(name)


# Whisper tiny.en hears "AI, what …" as "Hey, I, what …": taken as the address only with the comma after "I",
# so "Hey, I think …" stays an ordinary sentence.
_HEY_I = re.compile(r"^\W*(?:hey|hi)[\s,]+i\s*[,:;!?]+\s*", re.IGNORECASE)


class Addressing:
    def __init__(self, name: str = "AI"):
        n = _name_pattern(name)
        self._chat = re.compile(rf"(?:^|\s)@{n}\b[\s,:;.!?，：。！？]*", re.IGNORECASE)
        self._spoken = re.compile(rf"^\W*(?:(?:hey|hi|ok|okay|so)[\s,]+)?{n}(?:[\s,:;.!?，：。！？]+|$)",
                                  re.IGNORECASE)
        self._zh = re.compile(r"^\W*(?:人工智能|助手|AI|ai)(?![A-Za-z])[\s,，：:]*")
        self._hey_i = _HEY_I if name.lower() in ("ai", "a.i.") else None

    def match(self, text: str, source: str) -> Request | None:
        """The request in `text`, or None when the host is not addressed."""
        rest = None
        if source == "chat":
            m = self._chat.search(text)
            if m:
                rest = (text[:m.start()] + " " + text[m.end():]).strip()
        if rest is None:
            m = self._spoken.match(text) or self._zh.match(text) or (self._hey_i and self._hey_i.match(text))
            if m:
                rest = text[m.end():].strip()
        if rest is None:
            return None
        return Request(rest, intent_of(rest))


_SUMMARY = re.compile(r"\b(summari[sz]e|summary|sum up|recap)\b|总结|概括|摘要", re.IGNORECASE)
def intent_of(text: str) -> str:
    return "summary" if _SUMMARY.search(text) else "ask"
