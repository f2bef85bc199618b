"""How the AI host says numbers, times, lists of names and the agenda, in English and in Chinese."""
from __future__ import annotations

import time

from meeting.agenda import AgendaItem


def count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def names(items: list[str], language: str) -> str:
    if language == "zh":
        return "、".join(items) or "没有人"
    if not items:
        return "nobody"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float | None, language: str) -> str:
    """'40 seconds', '1 minute 20 seconds', 'about 4 minutes', '1 hour 5 minutes' (and the Chinese)."""
    s = max(0, int((seconds or 0) + 0.5))
    zh = language == "zh"
    if s < 60:
        return f"{s}秒" if zh else count(s, "second", "seconds")
    if s < 120:
        rest = s - 60
        if zh:
            return f"1分{rest}秒" if rest >= 5 else "1分钟"
        return f"1 minute {count(rest, 'second', 'seconds')}" if rest >= 5 else "1 minute"
    minutes = int(s / 60 + 0.5)
    about = abs(s - minutes * 60) > 5
    if minutes >= 90:
        h, m = divmod(minutes, 60)
        if zh:
            return f"{'大约' if about else ''}{h}小时" + (f"{m}分钟" if m else "")
        return ("about " if about else "") + count(h, "hour", "hours") + (f" {count(m, 'minute', 'minutes')}" if m else "")
    if zh:
        return f"{'大约' if about else ''}{minutes}分钟"
    return ("about " if about else "") + count(minutes, "minute", "minutes")


def clock(t: float) -> str:
    """A wall-clock time as HH:MM in the server's time zone."""
    return time.strftime("%H:%M", time.localtime(t))


def at(name: str, verb: str, t: float, state) -> str:
    """'Lucy joined at 10:03, 4 minutes ago.'"""
    ago = duration(state.now - t, state.language)
    if state.language == "zh":
        return f"{name}在{clock(t)}{'加入' if verb == 'joined' else '离开'}，{ago}前。"
    return f"{name} {verb} at {clock(t)}, {ago} ago."


def agenda(items: list[AgendaItem], language: str) -> str:
    if not items:
        return "今天没有议程。" if language == "zh" else "There is no agenda for this meeting."
    if language == "zh":
        parts = "；".join(f"{i + 1}. {it.title}，{duration(it.seconds, 'zh')}" for i, it in enumerate(items))
        return f"今天的议程：{parts}。"
    parts = "; ".join(f"{i + 1}, {it.title}, {duration(it.seconds, 'en')}" for i, it in enumerate(items))
    return f"The agenda has {count(len(items), 'item', 'items')}: {parts}."


def action_items(items: list[tuple[str | None, str, str | None]], language: str) -> str:
    """(owner, task, due) as one spoken sentence per item."""
    if language == "zh":
        return "待办事项：" + "；".join(f"{owner or '待定'}：{task}" + (f"，{due}" if due else "")
                                    for owner, task, due in items) + "。"
    said = "; ".join(f"{owner or 'someone'} will {task[:1].lower() + task[1:]}" + (f", due {due}" if due else "")
                     for owner, task, due in items)
    return f"{count(len(items), 'action item', 'action items').capitalize()}: {said}."
