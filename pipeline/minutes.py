"""A meeting's minutes: who was there and for how long, what was decided, who does what by when, what is still
open, and a summary; every decision and action item cites the transcript lines it comes from.

The structure comes from `pipeline.notes` (rules over what people said; the host's own words and what was asked
of it are left out). The summary is written from that structure and the room's record, so it says nothing the
meeting did not; with a configured remote LLM (LLM_BASE_URL) that model writes the summary's prose instead,
from the same facts. `bench.minutes` measured the embedded models writing minutes themselves: see
docs/BENCHMARKS.md.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from meeting.agenda import AgendaItem
from pipeline import phrases
from pipeline.addressing import Addressing
from pipeline.facts import Stay, stays_of
from pipeline.frames import ErrorFrame
from pipeline.notes import Notes, People, Said, extract_notes
from pipeline.transcript import Line, Transcript

log = logging.getLogger(__name__)
STOPWORDS = frozenset("""a an the and or but if then so to of in on at for with by from as is are was were be been being
it its this that these those i you he she we they me him her us them my your our their what which who whom whose
when where why how all any both each few more most other some such no nor not only own same than too very can will
just don should now do does did doing have has had having am would could there here about into over under again
further once also let lets ok okay yes yeah hi hello thanks thank please well like get got go going know think
one two say said i'm it's that's we're you're i'll we'll really still right sure good great maybe need want""".split())
ZH_STOPWORDS = frozenset("""分钟 时候 一下 现在 今天 明天 这次 一个 还是 可以 没有 什么 怎么 大家 已经 应该
因为 所以 但是 如果 觉得
知道 下周 周五 之前 以后 直接 一起 不好 好的 感觉 估计 其实 然后 那么 刚才 之后 开始 问题 事情 东西 时间 一点 一直""".split())
_ZH_FUNCTION = re.compile(r"[的了是我你他她们这那个就也都吗呢吧啊在有]")


@dataclass
class MeetingRecord:
    """What the minutes are made from: a room's transcript and attendance at one moment."""
    room_id: str
    language: str
    host_user_id: str
    host_name: str
    lines: list[Line]
    stays: list[Stay]
    agenda: list[AgendaItem] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None           # None while the meeting goes on

    def content(self) -> list[Line]:
        """What people said to each other: not the host's words, not what was asked of the host."""
        addressed = Addressing(self.host_name)
        return [ln for ln in self.lines if ln.speaker != self.host_user_id and addressed.match(ln.text, ln.source) is None]

    def notes(self) -> Notes:
        people = People((s.user_id, s.name) for s in self.stays)
        day = dt.datetime.fromtimestamp(self.started_at or time.time()).date()
        return extract_notes([Said(ln.n, ln.speaker, ln.text) for ln in self.content()], people, self.language, day)


@dataclass
class Minutes:
    room_id: str
    language: str
    summary: str
    notes: Notes
    people: People
    participants: list[dict]
    agenda: list[AgendaItem]
    started_at: float | None
    ended_at: float | None
    generated_at: float
    summary_by: str                         # "notes" (written from the structure) or the LLM's description

    @property
    def duration_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return round((self.ended_at or self.generated_at) - self.started_at, 1)

    def as_json(self) -> dict:
        n = self.notes
        return {
            "room_id": self.room_id, "language": self.language, "summary": self.summary,
            "decisions": [{"text": d.text, "source_lines": d.source_lines} for d in n.decisions],
            "action_items": [{"owner": self.people.name(a.owner), "owner_id": a.owner, "task": a.task,
                              "due": a.due.text if a.due else None,
                              "due_date": a.due.date.isoformat() if a.due and a.due.date else None,
                              "source_lines": a.source_lines} for a in n.action_items],
            "open_questions": [{"text": q.text, "source_lines": q.source_lines} for q in n.open_questions],
            "participants": self.participants, "agenda": [{"title": i.title, "minutes": i.minutes} for i in self.agenda],
            "started_at": self.started_at, "ended_at": self.ended_at, "duration_s": self.duration_s,
            "generated_at": self.generated_at, "summary_by": self.summary_by}

    def spoken(self) -> str:
        """At most three sentences, for the host to say."""
        return spoken_summary(self.notes, self.people, self.language)

    def markdown(self) -> str:
        return to_markdown(self)


def meeting_record(room, transcript: Transcript, host_user_id: str, host_name: str) -> MeetingRecord:
    """A room's record now (`room` is a meeting.room.JitsiRoom)."""
    stays = stays_of(room)
    ended = None
    if stays and not room.present():
        ended = max(s.left_at or 0.0 for s in stays) or None
    return MeetingRecord(room.room_id, room.language, host_user_id, host_name, transcript.lines(), stays,
                         list(room.agenda.items), room.started_at, ended)


def make_minutes(record: MeetingRecord, now: float | None = None) -> Minutes:
    """The minutes, with the summary written from the notes (fast: no model)."""
    now = time.time() if now is None else now
    notes = record.notes()
    people = People((s.user_id, s.name) for s in record.stays)
    minutes = Minutes(record.room_id, record.language, "", notes, people, attendance(record.stays),
                      record.agenda, record.started_at, record.ended_at, now, "notes")
    minutes.summary = summary_from_notes(minutes, record.content())
    return minutes


def attendance(stays: list[Stay]) -> list[dict]:
    """One entry per person: when they first came and last left (None while still there)."""
    people: dict[str, dict] = {}
    for s in stays:
        entry = people.setdefault(s.user_id, {"user_id": s.user_id, "name": s.name, "joined_at": s.joined_at,
                                              "left_at": s.left_at})
        entry["left_at"] = s.left_at
    return list(people.values())


# --- writing -----------------------------------------------------------------------------------

def topics(lines: list[Line], language: str, count: int = 4) -> list[str]:
    """The content words said most often, by more than one line: what the meeting talked about."""
    if language == "zh":
        grams = Counter(g for ln in lines for g in {ln.text[i:i + 2] for i in range(len(ln.text) - 1)}
                        if re.fullmatch(r"[\u4e00-\u9fff]{2}", g) and not _ZH_FUNCTION.search(g) and g not in ZH_STOPWORDS)
    else:
        grams = Counter(w for ln in lines for w in {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", ln.text)}
                        if w not in STOPWORDS)
    return [w for w, c in grams.most_common(count) if c > 1]


def summary_from_notes(m: Minutes, content: list[Line]) -> str:
    zh, n = m.language == "zh", m.notes
    names = [p["name"] for p in m.participants]
    if not content:
        return "这次会议还没有人发言。" if zh else "Nothing has been said in this meeting yet."
    about = [i.title for i in m.agenda] or topics(content, m.language)
    lasted = phrases.duration(m.duration_s, m.language)
    if zh:
        parts = [f"{phrases.names(names, 'zh')}开会{lasted}" + (f"，议题：{'、'.join(about)}" if about else "") + "。"]
        if n.decisions:
            parts.append(f"决定了{len(n.decisions)}件事：" + "；".join(d.text.rstrip("。") for d in n.decisions) + "。")
        if n.action_items:
            owners = Counter(m.people.name(a.owner) or "待定" for a in n.action_items)
            parts.append(f"共{len(n.action_items)}项待办，负责人：" + "、".join(owners) + "。")
        if n.open_questions:
            parts.append("还没有定的：" + "；".join(q.text.rstrip("。？?") for q in n.open_questions) + "。")
        return "".join(parts)
    parts = [f"{phrases.names(names, 'en')} met for {lasted}" + (f" about {phrases.names(about, 'en')}" if about else "")
             + "."]
    if n.decisions:
        parts.append(f"They decided {phrases.count(len(n.decisions), 'thing', 'things')}: "
                     + "; ".join(_lower_first(d.text.rstrip(".")) for d in n.decisions) + ".")
    if n.action_items:
        owners = Counter(m.people.name(a.owner) or "someone" for a in n.action_items)
        parts.append(f"{phrases.count(len(n.action_items), 'action item was', 'action items were')} agreed, for "
                     + phrases.names(list(owners), "en") + ".")
    if n.open_questions:
        parts.append("Still open: " + "; ".join(q.text.rstrip(".?") for q in n.open_questions) + ".")
    if len(parts) == 1:
        parts.append("Nothing was decided or assigned.")
    return " ".join(parts)


SUMMARY_PROMPTS = {
    "en": ("You write the summary of a meeting's minutes: two or three plain sentences on what was discussed and "
           "what came out of it. Use only the transcript and the notes below; add no names, numbers or facts that "
           "are not in them. No lists, no markdown."),
    "zh": ("你为会议纪要写摘要：用两三句话说明讨论了什么、结果如何。"
           "只用下面的会议记录和要点，不要添加里面没有的人名、数字或事实。不要列表。"),
}


async def llm_summary(minutes: Minutes, content: list[Line], stage) -> str | None:
    """The summary's prose by a language model (`stage`: an LLMStage) from the transcript and the notes; None on
    failure (the summary from the notes stays)."""
    lang = "zh" if minutes.language == "zh" else "en"
    transcript = "\n".join(f"{ln.name}: {ln.text}" for ln in content[-200:])
    messages = [{"role": "system", "content": f"{SUMMARY_PROMPTS[lang]}\n\n{transcript}"},
                {"role": "user", "content": minutes.summary}]
    parts = []
    async for frame in stage.process(messages):
        if isinstance(frame, ErrorFrame):
            return None
        parts.append(frame.text)
    text = " ".join("".join(parts).split())
    return text or None


def spoken_summary(notes: Notes, people: People, language: str) -> str:
    """Decisions, action items, what is open: one sentence each, at most three."""
    zh = language == "zh"
    said = []
    if notes.decisions:
        decided = ("；" if zh else "; ").join(_clause(d.text, zh) for d in notes.decisions[:4])
        said.append(f"我们决定了：{decided}。" if zh else f"We decided: {decided}.")
    if notes.action_items:
        owners = Counter(people.name(a.owner) or ("待定" if zh else "someone") for a in notes.action_items)
        said.append(f"有{len(notes.action_items)}项待办，分别由{'、'.join(owners)}负责。" if zh else
                    f"There {'is' if len(notes.action_items) == 1 else 'are'} "
                    f"{phrases.count(len(notes.action_items), 'action item', 'action items')}, "
                    f"for {phrases.names(list(owners), 'en')}.")
    if notes.open_questions:
        open_ = ("；" if zh else "; ").join(_clause(q.text, zh) for q in notes.open_questions[:2])
        said.append(f"还没有定的是：{open_}。" if zh else f"Still open: {open_}.")
    if not said:
        return "到目前为止还没有做出决定，也没有待办事项。" if zh else "So far nothing has been decided or assigned."
    return " ".join(said) if not zh else "".join(said)


def _clause(text: str, zh: bool) -> str:
    """`text` as a part of one sentence: no sentence ends inside it."""
    text = text.strip().rstrip("。.？?！!")
    text = text if zh else _lower_first(text)
    return re.sub(r"[。？！]\s*" if zh else r"[.?!]\s+", "，" if zh else ", ", text)


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and not text[1].isupper() and not text.startswith("I "):
        return text[0].lower() + text[1:]
    return text


def to_markdown(m: Minutes) -> str:
    zh = m.language == "zh"
    label = {"title": "会议纪要" if zh else "Minutes", "summary": "摘要" if zh else "Summary",
             "who": "参会人" if zh else "Participants", "decisions": "决定" if zh else "Decisions",
             "actions": "待办事项" if zh else "Action items", "open": "待定问题" if zh else "Open questions",
             "none": "无" if zh else "None", "lines": "记录第" if zh else "transcript lines",
             "owner": "负责人" if zh else "Owner", "task": "事项" if zh else "Task", "due": "截止" if zh else "Due"}
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.started_at or m.generated_at))
    out = [f"# {label['title']}: {m.room_id}", "", f"{when} · {phrases.duration(m.duration_s, m.language)}", "",
           f"## {label['summary']}", "", m.summary, "", f"## {label['who']}", ""]
    out += [f"- {p['name']}" for p in m.participants] or [f"- {label['none']}"]
    out += ["", f"## {label['decisions']}", ""]
    out += [f"- {d.text} ({_cite(d.source_lines, zh)})" for d in m.notes.decisions] or [f"- {label['none']}"]
    out += ["", f"## {label['actions']}", ""]
    if m.notes.action_items:
        out += [f"| {label['owner']} | {label['task']} | {label['due']} | |", "|---|---|---|---|"]
        out += [f"| {m.people.name(a.owner) or '-'} | {a.task} | {a.due.text if a.due else '-'}"
                f"{f' ({a.due.date.isoformat()})' if a.due and a.due.date else ''} | {_cite(a.source_lines, zh)} |"
                for a in m.notes.action_items]
    else:
        out.append(f"- {label['none']}")
    out += ["", f"## {label['open']}", ""]
    out += [f"- {q.text} ({_cite(q.source_lines, zh)})" for q in m.notes.open_questions] or [f"- {label['none']}"]
    return "\n".join(out) + "\n"


def _cite(lines: list[int], zh: bool) -> str:
    numbers = ", ".join(str(n) for n in lines)
    return f"记录第{numbers}行" if zh else f"lines {numbers}"
