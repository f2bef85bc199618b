"""Deadlines as people say them ("by Friday", "end of the month", "周五之前", "15号前"): found in a sentence, kept
as said, and resolved to a calendar day where the words allow it."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ABBREV = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5, "sun": 6}
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_WD = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues?|wed|thu(?:rs?)?|fri)"
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
_NUM = r"(?:a|an|one|two|three|four|five|six|\d+)"
_WHEN_NEEDS_PREP = (rf"(?:this|next|coming)?\s*{_WD}(?:'s\s+[a-z-]+)?(?:\s+(?:morning|afternoon|evening|night|noon))?"
                    rf"|(?:the\s+)?{_ORD}(?:\s+of\s+{_MONTH})?|{_MONTH}\s+{_ORD}|{_ORD}\s+of\s+{_MONTH}"
                    r"|(?:the\s+)?(?:next|upcoming|following)\s+(?:meeting|sync|stand-?up|review|call|retro|session)")
_WHEN_ALONE = (r"(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|next\s+)?(?:day|week|month|quarter|sprint|year)"
               r"|eod|eow|cob|close\s+of\s+business"
               r"|tomorrow(?:\s+(?:morning|afternoon|evening|night|noon))?|tonight|today|this\s+(?:afternoon|evening|week)"
               r"|(?:this|next|early\s+next|later\s+this)\s+(?:week|month|sprint|quarter)"
               rf"|(?:in|within)\s+(?:the\s+next\s+)?{_NUM}\s+(?:business\s+|working\s+)?(?:days?|weeks?)"
               r"|(?:in|within)\s+(?:the\s+next\s+)?(?:a\s+)?(?:couple|few)\s+(?:of\s+)?days"
               r"|next\s+(?:monday|tuesday|wednesday|thursday|friday)")
EN_DUE = re.compile(
    rf"\b(?:(?:by|before|until|till|no\s+later\s+than|due|on|for|ahead\s+of|prior\s+to)\s+(?:{_WHEN_NEEDS_PREP}|{_WHEN_ALONE})"
    rf"|(?:{_WHEN_ALONE}))\b", re.IGNORECASE)
_LEADING_PREP = re.compile(r"^(?:by|on|for|due|until|till)\s+", re.IGNORECASE)

_ZH_NUM = r"(?:\d{1,2}|[一二三四五六七八九十]{1,3})"
ZH_DUE = re.compile(
    rf"(?:(?:这|本|下下|下)?个?(?:周|星期|礼拜)[一二三四五六日天1-7]"
    rf"|(?:今|明|后)天(?:上午|下午|晚上|中午)?|今晚|月底|月初|年底|周末|(?:下|本|这)(?:周|星期|个月|月)"
    rf"|{_ZH_NUM}月{_ZH_NUM}[日号]|{_ZH_NUM}[日号]"
    rf"|下次(?:会议|例会|开会|会)|(?:这|本)?周(?:内|末)"
    rf"|{_ZH_NUM}个?(?:工作日|天|周|星期)(?:内|之内)"
    rf")(?:下班|中午|上午|下午|晚上|早上|例会|开会)?(?:之前|以前|前|内|之内|底)?")


@dataclass(frozen=True)
class Due:
    text: str                       # as said, without a leading "by"/"on"
    date: dt.date | None            # the day it means, when the words say it


_DEADLINE = re.compile(r"^(?:by|before|until|till|no later than|due)\b|之前|以前|前$|内$|底$", re.IGNORECASE)


def find_due(text: str, language: str, day: dt.date | None = None) -> Due | None:
    """The deadline in `text` (of several, the last one said as a deadline: "I'll sync on Monday and send it by
    Tuesday" is due Tuesday), or None."""
    found = list((ZH_DUE if language == "zh" else EN_DUE).finditer(text))
    if not found:
        return None
    said = max(found, key=lambda m: (bool(_DEADLINE.search(m.group(0).strip())), m.start())).group(0).strip()
    if language == "zh":
        return Due(said, _resolve_zh(said, day) if day else None)
    said = _LEADING_PREP.sub("", said)
    return Due(said, _resolve_en(said.lower(), day) if day else None)


def strip_due(text: str, language: str) -> str:
    """`text` without its deadline phrase (the task's words)."""
    pattern = ZH_DUE if language == "zh" else EN_DUE
    out = pattern.sub(" ", text, count=1)
    return re.sub(r"\s{2,}", " ", out).strip(" ,;")


def _next_weekday(day: dt.date, weekday: int, next_week: bool) -> dt.date:
    ahead = (weekday - day.weekday()) % 7 or 7
    if next_week and ahead < 7 and day.weekday() < weekday:
        ahead += 7
    return day + dt.timedelta(days=ahead)


def _month_end(day: dt.date) -> dt.date:
    first_next = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first_next - dt.timedelta(days=1)


def _next_date(day: dt.date, month: int, number: int) -> dt.date | None:
    """The next `month`/`number` from `day` on (this year's, or next year's once it has passed); None if no such date."""
    try:
        candidate = dt.date(day.year, month, number)
    except ValueError:
        return None
    return candidate if candidate >= day else candidate.replace(year=day.year + 1)


def _day_of_month(day: dt.date, n: int) -> dt.date | None:
    try:
        candidate = day.replace(day=n)
    except ValueError:
        return None
    if candidate < day:
        month = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        try:
            candidate = month.replace(day=n)
        except ValueError:
            return None
    return candidate


def _resolve_en(said: str, day: dt.date) -> dt.date | None:
    if "tomorrow" in said:
        return day + dt.timedelta(days=1)
    if said in ("today", "tonight", "eod", "cob", "close of business") or "end of the day" in said \
            or said.startswith("this afternoon") or said.startswith("this evening") or said == "end of day":
        return day
    if "end of" in said and "month" in said:
        return _month_end(day)
    if said in ("eow",) or ("end of" in said and "week" in said):
        friday = _next_weekday(day, 4, False) if day.weekday() >= 4 else day + dt.timedelta(days=4 - day.weekday())
        return friday + (dt.timedelta(days=7) if "next week" in said else dt.timedelta())
    m = re.search(rf"\b({_WD})\b", said)
    if m:
        word = m.group(1)
        weekday = WEEKDAYS.index(word) if word in WEEKDAYS else _ABBREV[word]
        return _next_weekday(day, weekday, "next" in said.split(m.group(1))[0])
    m = re.search(rf"\b({_MONTH})\s+(\d{{1,2}})|(\d{{1,2}})(?:st|nd|rd|th)?\s+of\s+({_MONTH})", said)
    if m:
        name, number = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        month = next(i for i, full in enumerate(MONTHS, 1) if full.startswith(name[:3]))
        return _next_date(day, month, int(number))
    m = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)\b", said)
    if m:
        return _day_of_month(day, int(m.group(1)))
    m = re.search(rf"\bin\s+({_NUM})\s+(days?|weeks?)", said)
    if m:
        n = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}.get(m.group(1))
        n = n if n is not None else int(m.group(1))
        return day + dt.timedelta(days=n * (7 if m.group(2).startswith("week") else 1))
    return None


_ZH_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}


def _zh_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if len(text) == 1:
        return _ZH_DIGITS[text]
    if text[0] == "十":
        return 10 + _ZH_DIGITS.get(text[1], 0)
    return _ZH_DIGITS[text[0]] * 10 + (_ZH_DIGITS.get(text[2], 0) if len(text) > 2 else 0)


def _resolve_zh(said: str, day: dt.date) -> dt.date | None:
    if said.startswith("明天"):
        return day + dt.timedelta(days=1)
    if said.startswith("后天"):
        return day + dt.timedelta(days=2)
    if said.startswith("今"):
        return day
    if said.startswith("月底"):
        return _month_end(day)
    m = re.search(r"(下下|下)?个?(?:周|星期|礼拜)([一二三四五六日天1-7])", said)
    if m:
        w = m.group(2)
        weekday = int(w) - 1 if w.isdigit() else _ZH_WEEKDAY[w]
        monday = day - dt.timedelta(days=day.weekday())
        weeks = {"下下": 2, "下": 1}.get(m.group(1) or "", 0)
        target = monday + dt.timedelta(days=7 * weeks + weekday)
        return target if target >= day else target + dt.timedelta(days=7)
    m = re.search(rf"({_ZH_NUM})月({_ZH_NUM})[日号]", said)
    if m:
        return _next_date(day, _zh_number(m.group(1)), _zh_number(m.group(2)))
    m = re.search(rf"({_ZH_NUM})[日号]", said)
    if m:
        return _day_of_month(day, _zh_number(m.group(1)))
    return None
