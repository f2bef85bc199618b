"""The meeting's agenda: items with durations, when each starts, and when to warn that time is nearly up."""
from __future__ import annotations

from dataclasses import dataclass

MAX_ITEMS = 20
MAX_MINUTES = 240.0


class AgendaError(ValueError):
    pass


@dataclass(frozen=True)
class AgendaItem:
    title: str
    minutes: float

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0


def parse_agenda(raw: object) -> list[AgendaItem]:
    """[{"title": str, "minutes": number}, …] from a request body, checked."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise AgendaError(f"agenda must be a list of at most {MAX_ITEMS} items")
    items = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise AgendaError(f"agenda item {i + 1} must be an object with title and minutes")
        title, minutes = entry.get("title"), entry.get("minutes")
        if not isinstance(title, str) or not 1 <= len(title.strip()) <= 120:
            raise AgendaError(f"agenda item {i + 1}: title must be 1-120 characters")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= MAX_MINUTES:
            raise AgendaError(f"agenda item {i + 1}: minutes must be a number above 0 and at most {MAX_MINUTES:g}")
        items.append(AgendaItem(title.strip(), float(minutes)))
    return items


@dataclass(frozen=True)
class AgendaEvent:
    at: float             # seconds from the meeting's start
    kind: str             # "start", "warn" or "end"
    index: int
    item: AgendaItem


def schedule(items: list[AgendaItem]) -> list[AgendaEvent]:
    """Each item's start, its warning (a quarter of its time before its end, at most a minute), and the end."""
    events, t = [], 0.0
    for i, item in enumerate(items):
        events.append(AgendaEvent(t, "start", i, item))
        events.append(AgendaEvent(t + item.seconds - min(60.0, item.seconds / 4), "warn", i, item))
        t += item.seconds
    if items:
        events.append(AgendaEvent(t, "end", len(items) - 1, items[-1]))
    return events


def announcement(event: AgendaEvent, total: int, language: str) -> str:
    item, n = event.item, event.index + 1
    left = min(60.0, item.seconds / 4)
    if language == "zh":
        if event.kind == "start":
            return f"第{n}项议程：{item.title}，{_zh_duration(item.seconds)}。"
        if event.kind == "warn":
            return f"{item.title}还剩{_zh_duration(left)}。"
        return "议程全部结束。"
    if event.kind == "start":
        first = "Let's start with" if n == 1 else "Next,"
        return f"{first} item {n} of {total}: {item.title}, {_en_duration(item.seconds)}."
    if event.kind == "warn":
        return f"{_en_duration(left).capitalize()} left for {item.title}."
    return "That was the last agenda item."


def describe(items: list[AgendaItem], language: str) -> str:
    if not items:
        return "今天没有议程。" if language == "zh" else "There is no agenda for this meeting."
    if language == "zh":
        parts = "；".join(f"{i + 1}. {it.title}，{_zh_duration(it.seconds)}" for i, it in enumerate(items))
        return f"今天的议程：{parts}。"
    parts = "; ".join(f"{i + 1}, {it.title}, {_en_duration(it.seconds)}" for i, it in enumerate(items))
    return f"The agenda has {len(items)} item{'s' if len(items) > 1 else ''}: {parts}."


def _en_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        m = int(seconds // 60)
        return f"{m} minute{'s' if m != 1 else ''}"
    return f"{round(seconds)} seconds"


def _zh_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}分钟"
    return f"{round(seconds)}秒"
