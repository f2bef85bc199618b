"""What the AI host says as the agenda goes (the agenda itself is the room's: `meeting.agenda`)."""
from __future__ import annotations

from meeting.agenda import AgendaEvent, warning_lead
from pipeline.phrases import duration


def announcement(event: AgendaEvent, total: int, language: str) -> str:
    item, n = event.item, event.index + 1
    left = warning_lead(item)
    if language == "zh":
        if event.kind == "start":
            return f"第{n}项议程：{item.title}，{duration(item.seconds, 'zh')}。"
        if event.kind == "warn":
            return f"{item.title}还剩{duration(left, 'zh')}。"
        return "议程全部结束。"
    if event.kind == "start":
        first = "Let's start with" if n == 1 else "Next,"
        return f"{first} item {n} of {total}: {item.title}, {duration(item.seconds, 'en')}."
    if event.kind == "warn":
        return f"{duration(left, 'en').capitalize()} left for {item.title}."
    return "That was the last agenda item."
