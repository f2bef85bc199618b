"""A meeting's agenda: items with durations, the schedule of their starts and warnings, and the clock that says
which item's time it is and how much is left."""
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
    at: float             # seconds from the agenda's start
    kind: str             # "start", "warn" or "end"
    index: int
    item: AgendaItem


def schedule(items: list[AgendaItem]) -> list[AgendaEvent]:
    """Each item's start, its warning (a quarter of its time before its end, at most a minute), and the end."""
    events, t = [], 0.0
    for i, item in enumerate(items):
        events.append(AgendaEvent(t, "start", i, item))
        events.append(AgendaEvent(t + item.seconds - warning_lead(item), "warn", i, item))
        t += item.seconds
    if items:
        events.append(AgendaEvent(t, "end", len(items) - 1, items[-1]))
    return events


def warning_lead(item: AgendaItem) -> float:
    return min(60.0, item.seconds / 4)


@dataclass(frozen=True)
class AgendaPosition:
    """Where the agenda stands at one moment. `current` is None before the start and after the last item."""
    started: bool
    current: int | None
    item_left_s: float | None        # of the current item
    total_left_s: float | None       # of the whole agenda (0 once it is over)
    overrun_s: float                 # how far past the agenda's planned end
    elapsed_s: float = 0.0           # since the agenda started

    def next_index(self, count: int) -> int | None:
        if not self.started:
            return 0 if count else None
        if self.current is None or self.current + 1 >= count:
            return None
        return self.current + 1


class AgendaClock:
    """The agenda's items and when it started (a monotonic time, set once by whoever runs the agenda)."""

    def __init__(self, items: list[AgendaItem] | None = None):
        self.items: list[AgendaItem] = list(items or [])
        self.started_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def start(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now

    @property
    def total_s(self) -> float:
        return sum(item.seconds for item in self.items)

    def position(self, now: float) -> AgendaPosition:
        if self.started_at is None or not self.items:
            return AgendaPosition(False, None, None, self.total_s if self.items else None, 0.0)
        elapsed, t = now - self.started_at, 0.0
        for i, item in enumerate(self.items):
            if elapsed < t + item.seconds:
                return AgendaPosition(True, i, t + item.seconds - elapsed, self.total_s - elapsed, 0.0, elapsed)
            t += item.seconds
        return AgendaPosition(True, None, None, 0.0, elapsed - self.total_s, elapsed)

    def as_json(self, now: float) -> dict:
        pos = self.position(now)
        return {"started": pos.started, "current": pos.current, "next": pos.next_index(len(self.items)),
                "item_left_s": _round(pos.item_left_s), "total_left_s": _round(pos.total_left_s),
                "overrun_s": _round(pos.overrun_s)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
