"""Questions about the meeting itself, answered from the room's state and the transcript, never guessed.

`MeetingState` is what the host knows at one moment (who is here and who was, the agenda's clock, what was
said). `ask(question, state)` returns the exact answer when the question is one of the known kinds (head
count, who is here, who joined or left, the agenda and its times, how long the meeting has run, what a
person said about something, what was decided, the action items, what is still open), else None: the
language model answers then, with `state.prompt_facts()` in its prompt.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meeting.agenda import AgendaItem, AgendaPosition
from pipeline import phrases
from pipeline.notes import Notes, People


@dataclass(frozen=True)
class Stay:
    user_id: str
    name: str
    joined_at: float
    left_at: float | None = None


@dataclass
class MeetingState:
    language: str
    host_name: str
    present: list[str]                       # names of the people connected now, in the order they came
    stays: list[Stay]                        # every stay of a person (not the host), oldest first
    agenda: list[AgendaItem]
    position: AgendaPosition
    lines: list                              # transcript lines said by people, not put to the host
    started_at: float | None = None          # wall clock: the first person's arrival
    now: float = field(default_factory=time.time)
    notes_of: Callable[[], Notes] | None = None    # decisions, action items, open questions so far (made on demand)
    _notes: Notes | None = field(default=None, init=False, repr=False)

    @property
    def people(self) -> People:
        return People((s.user_id, s.name) for s in self.stays)

    @property
    def notes(self) -> Notes:
        if self._notes is None:
            self._notes = self.notes_of() if self.notes_of is not None else Notes()
        return self._notes

    def prompt_facts(self) -> str:
        """The meeting's state in one compact line for the language model (volatile: put it last in a prompt)."""
        zh = self.language == "zh"
        here = phrases.names(self.present, self.language)
        parts = [f"现在在会上的人（{len(self.present)}位）：{here}，外加你（{self.host_name}）" if zh else
                 f"People here now ({len(self.present)}): {here}, plus you ({self.host_name})"]
        gone = [s.name for s in self.stays if s.left_at is not None and s.name not in self.present]
        if gone:
            parts.append(("已离开：" if zh else "Left: ") + phrases.names(gone, self.language))
        if self.started_at is not None:
            parts.append(("会议已进行" if zh else "Meeting running for ") +
                         phrases.duration(self.now - self.started_at, self.language))
        if self.agenda and self.position.current is not None:
            item = self.agenda[self.position.current]
            parts.append(f"当前议程：{item.title}，剩{phrases.duration(self.position.item_left_s, 'zh')}" if zh else
                         f"Current agenda item: {item.title}, "
                         f"{phrases.duration(self.position.item_left_s, 'en')} left")
        return ("；" if zh else "; ").join(parts) + ("。" if zh else ".")


def stays_of(room) -> list[Stay]:
    """Every stay of a person in a room (`room`: a meeting.room.JitsiRoom), oldest first; not the host."""
    return [Stay(a.user_id, a.name, a.joined_at, a.left_at) for a in list(room.attendance) if not a.is_host]


def meeting_state(room, lines: list, host_name: str, notes_of: Callable[[], Notes] | None = None) -> MeetingState:
    """The room's state now; `lines`: what people said to each other (no host, no questions to it)."""
    return MeetingState(room.language, host_name, [m.display_name for m in room.present()], stays_of(room),
                        list(room.agenda.items), room.agenda.position(time.monotonic()), lines, room.started_at,
                        time.time(), notes_of)


# --- what is asked ---------------------------------------------------------------------------

_EN = [
    ("other_meeting", r"\b(?:last|previous|earlier|next|yesterday's|tomorrow's|last week's) "
                      r"(?:meeting|call|standup|stand-up|sync)s?\b"),
    ("time_left_total", r"\b(?:how much|how long|how many minutes|time)\b.*\b(?:left|remaining|to go)\b.*\b(?:meeting|"
                        r"overall|in total|total|altogether|today|whole agenda|the agenda(?! item))\b|"
                        r"\bwhen (?:do|will|does|should) (?:we|the meeting|this meeting|it) (?:end|finish|wrap up)"),
    ("time_left_item", r"\b(?:how much|how long|how many minutes|time)\b.*\b(?:left|remaining|to go)\b|"
                       r"\bhow much (?:longer|more time)\b"),
    ("elapsed", r"\bhow long (?:have we been|has (?:this|the) (?:meeting|call) been|did we|has it been|is the meeting|"
                r"are we)\b|\bhow long (?:into|have we)\b|\bwhen did (?:the|this) (?:meeting|call) start"),
    ("head_count", r"\bhow many (?:people|of us|persons|participants|humans|folks|attendees|are (?:here|there|on|in)|"
                   r"is here|are left|people are left|still)|\bhead ?count\b|\bnumber of (?:people|participants)"),
    ("said", r"\b(?:what did|what has|did) (?P<name>[\w .'-]+?) (?:say|said|mention|think|suggest|propose)\b"
             r"(?:.*?\b(?:about|on|regarding|of|for) (?P<topic>.+))?|\bwhat (?:was|were|is) (?P<name2>[\w.'-]+?)'s "
             r"(?:point|view|opinion|take|thoughts?|position|idea)(?: (?:on|about) (?P<topic2>.+))?|\bremind me what "
             r"(?P<name3>[\w .'-]+?) said(?: (?:about|on|regarding) (?P<topic3>.+))?"),
    ("joined", r"\bwho (?:just |has |have )?(?:joined|came in|arrived|showed up|is new)|\bwho joined late|"
               r"\bwhen did (?P<name>[\w .'-]+?) (?:join|arrive|come in)"),
    ("left", r"\bwho (?:just |has |have )?(?:left|dropped|dropped off|hung up|went)|\bwho(?:'s| is) gone|"
             r"\bwhen did (?P<name>[\w .'-]+?) (?:leave|drop)"),
    ("present", r"\bwho(?:'s| is| are)? (?:still )?(?:here|present|on the call|in (?:the|this) (?:meeting|room|call)|"
                r"attending|online|in here|on)\b|\blist (?:the )?(?:people|participants|attendees)|\bwho do we have\b|"
                r"\bwho(?:'s| is) (?:in|at) (?:the|this) meeting"),
    ("agenda_next", r"\bwhat(?:'s| is| comes)? (?:up )?next\b|\bnext (?:agenda )?(?:item|topic|point)\b|"
                    r"\b(?:item|topic) after\b|\bafter (?:this|that) (?:one|item|topic)\b|\bwhat follows\b|"
                    r"\bwhat(?:'s| is) after\b|\banything (?:else )?(?:left )?on the agenda"),
    ("agenda_current", r"\b(?:which|what) (?:agenda )?(?:item|topic|point) (?:are we|is (?:it|this|now|current)|"
                       r"should we be)|\bcurrent (?:agenda )?(?:item|topic)\b|\bwhere are we (?:on|in) the agenda|"
                       r"\bwhat are we (?:on|discussing|supposed to be discussing)\b|\b(?:which|what)(?:'s| is)? "
                       r"(?:the )?(?:agenda )?(?:item|topic) (?:right )?now\b|\b(?:agenda )?(?:item|topic) (?:are we on|"
                       r"is it)\b"),
    ("agenda_list", r"\bagenda\b"),
    ("decided", r"\bwhat (?:have|did|has) (?:we|everyone|the team) (?:decide|decided|agree|agreed|settle|settled)|"
                r"\bwhat we(?:'ve| have)? (?:decided|agreed|settled)|"
                r"\bwhat (?:was|were|has been|have been) (?:decided|agreed)|\b(?:any|list the|what are the|our) "
                r"decisions\b|\bdecided so far\b"),
    ("actions", r"\baction items?\b|\bwho(?:'s| is) doing what\b|\bto-?dos?\b|\bnext steps\b|\bwho (?:is|was) "
                r"(?:responsible|assigned)|\bwhat (?:tasks|are the tasks)"),
    ("open", r"\b(?:open|unresolved|outstanding|unanswered) (?:questions?|issues?|points?)\b|\bwhat(?:'s| is) still open"),
]
_ZH = [
    ("other_meeting", r"(?:上次|上一次|上周|昨天|下次|下一次|明天|别的|其他)的?(?:会|会议|例会)"),
    ("time_left_total", r"(?:整个会|会议|总共|全部|一共|整体|整场|今天的会).*(?:还剩|剩下|剩余|还有多少|还有几|还有多长|"
                        r"还要多久|还有多久)|"
                        r"什么时候(?:结束|散会|开完)"),
    ("time_left_item", r"(?:这一项|这项|这个议题|这部分|这个议程|当前议程|这一块|这块)"
                       r".*(?:还剩|剩下|剩余|还有多少|还有几|多久)|"
                       r"还剩(?:多少|几)(?!个人|位|人)"),
    ("elapsed", r"开了多久|开了多长|进行了多久|进行多久|开多久了|开了多少|已经开了|开始多久|开了几分钟"),
    ("head_count", r"几个人|多少人|几位|人数|多少位"),
    ("said", r"(?P<name>[\u4e00-\u9fffA-Za-z]{1,6}?)(?:刚才|之前|前面)?(?:对|关于|就)(?P<topic>.{1,20}?)(?:是)?"
             r"(?:怎么说|说了什么|说什么|什么意见|怎么看|的看法|的意见|的想法|有什么看法|讲了什么)|"
             r"(?P<name2>[\u4e00-\u9fffA-Za-z]{1,6}?)(?:刚才|之前|前面)?(?:说的|讲的|提的)(?P<topic2>.{1,12}?)"
             r"(?:是怎么|是什么|怎么|是)|(?P<name3>[\u4e00-\u9fffA-Za-z]{1,6}?)有没有(?:说|提|讲|谈)(?:过|到|起)?"
             r"(?P<topic3>.{1,20}?)(?:的事|的问题)?(?:吗|？|\?|$)"),
    ("joined", r"谁(?:是)?(?:后来|刚刚|刚才|刚)?(?:加入|进来|进会|来了|上线|入会)|后来(?:进来|加入)的|谁迟到"),
    ("left", r"谁(?:已经|刚才|刚刚|先)?(?:走了|离开|下线|退出|先撤|先下|先走)|谁(?:先)?走"),
    ("present", r"(?:都)?有谁|谁在|哪些人|谁还在|在线的|参会的|参会人|与会"),
    ("agenda_next", r"下一项|下一个议程|下个议程|接下来(?:还有|是|讲|聊|要)?(?:什么|哪|别的)|之后是什么|还有(?:别的|其他)议程|"
                    r"后面还有"),
    ("agenda_current", r"(?:现在|目前|当前|按时间|应该)(?:我们)?(?:在|是|到了|进行到)?(?:哪一?项|第几项|什么议程)|当前议程|"
                       r"哪一项议程|现在在哪|进行到哪"),
    ("agenda_list", r"议程"),
    ("decided", r"(?:决定了|定了|达成了|同意了|确定了)(?:哪些|什么)|(?:哪些|什么)(?:决定|结论)"),
    ("actions", r"待办|行动项|谁负责什么|任务分工|后续(?:工作|任务)|谁要做什么"),
    ("open", r"(?:还没定|没解决|悬而未决|待定|遗留)(?:的)?(?:问题|事项)?"),
]
_PATTERNS = {"en": [(k, re.compile(p, re.IGNORECASE)) for k, p in _EN],
             "zh": [(k, re.compile(p, re.IGNORECASE)) for k, p in _ZH]}


def classify(question: str, language: str) -> tuple[str, re.Match] | None:
    """The kind of a question about the meeting, and the match (names and topics in it), or None."""
    langs = [language] + [other for other in _PATTERNS if other != language]
    for lang in langs:
        for kind, pattern in _PATTERNS[lang]:
            if (m := pattern.search(question)) is not None:
                return kind, m
    return None


_ABOUT_MEETING = re.compile(r"\b(?:meeting|call|agenda|said|decided?|decisions?|agreed|minutes|joined|participants?|"
                            r"attendees?|discuss(?:ed|ion)?|mentioned|proposed|action items?)\b|"
                            r"会议|会上|议程|刚才|说了|决定|讨论|"
                            r"参会", re.IGNORECASE)


def about_meeting(question: str, state: MeetingState) -> bool:
    """Whether a question is about this meeting (so a model's answer to it must keep to what is known)."""
    return bool(_ABOUT_MEETING.search(question) or state.people.mentioned(question))


def ask(question: str, state: MeetingState) -> str | None:
    """The exact answer to a question about the meeting, or None when it is not one of the known kinds."""
    found = classify(question, state.language)
    if found is None:
        return None
    kind, match = found
    return _ANSWERS[kind](state, match)


# --- answers ---------------------------------------------------------------------------------

def _zh(state: MeetingState) -> bool:
    return state.language == "zh"


def _head_count(state: MeetingState, _m) -> str:
    n, here = len(state.present), phrases.names(state.present, state.language)
    if _zh(state):
        return f"现在会上有{n}个人：{here}。另外还有我，AI主持人。" if n else "现在会上除了我没有别人。"
    if not n:
        return "Nobody is here right now apart from me."
    return f"There {'is' if n == 1 else 'are'} {phrases.count(n, 'person', 'people')} here: {here}, plus me, the AI host."


def _present(state: MeetingState, _m) -> str:
    n, here = len(state.present), phrases.names(state.present, state.language)
    if _zh(state):
        return f"现在在会上的是：{here}，共{n}人，还有我。" if n else "现在会上除了我没有别人。"
    return f"Here now: {here}, {phrases.count(n, 'person', 'people')}, and me." if n else "Nobody but me is here."


def _late(state: MeetingState) -> list[Stay]:
    """Who came after the meeting got going (after its first words)."""
    first_word = state.lines[0].t if state.lines else None
    return [s for s in state.stays if first_word is not None and s.joined_at > first_word]


def _person(state: MeetingState, said: str | None) -> tuple[str | None, str | None]:
    """(user id, name) of a person named in a question."""
    if not said:
        return None, None
    ids = state.people.mentioned(said)
    return (ids[0], state.people.name(ids[0])) if ids else (None, said.strip())


def _joined(state: MeetingState, m: re.Match) -> str:
    zh, named = _zh(state), m.groupdict().get("name")
    if named:
        uid, name = _person(state, named)
        stay = next((s for s in reversed(state.stays) if s.user_id == uid), None)
        if stay is None:
            return f"{name}没有来过这次会议。" if zh else f"{name} has not been in this meeting."
        return phrases.at(name, "joined", stay.joined_at, state)
    late = _late(state)
    if not late:
        return "大家都是一开始就在的。" if zh else "Everyone has been here since the start."
    newest = sorted(late, key=lambda s: s.joined_at, reverse=True)[:3]
    return " ".join(phrases.at(s.name, "joined", s.joined_at, state) for s in newest)


def _left(state: MeetingState, m: re.Match) -> str:
    zh, named = _zh(state), m.groupdict().get("name")
    gone = [s for s in state.stays if s.left_at is not None and s.name not in state.present]
    if named:
        uid, name = _person(state, named)
        gone = [s for s in gone if s.user_id == uid]
        if not gone:
            return f"{name}没有离开。" if zh else f"{name} has not left."
    if not gone:
        return "还没有人离开。" if zh else "Nobody has left; everyone who came is still here."
    newest = sorted(gone, key=lambda s: s.left_at, reverse=True)[:3]
    return " ".join(phrases.at(s.name, "left", s.left_at, state) for s in newest)


def _no_agenda(state: MeetingState) -> str:
    return "这次会议没有议程。" if _zh(state) else "This meeting has no agenda."


def _agenda_list(state: MeetingState, _m) -> str:
    if not state.agenda:
        return _no_agenda(state)
    return phrases.agenda(state.agenda, state.language)


def _agenda_current(state: MeetingState, _m) -> str:
    zh, pos, items = _zh(state), state.position, state.agenda
    if not items:
        return _no_agenda(state)
    if not pos.started:
        return f"议程还没开始，第一项是{items[0].title}。" if zh else \
            f"The agenda has not started yet; first is {items[0].title}."
    if pos.current is None:
        return f"议程已经全部结束，最后一项是{items[-1].title}。" if zh else \
            f"We are past the end of the agenda; the last item was {items[-1].title}."
    item, left = items[pos.current], phrases.duration(pos.item_left_s, state.language)
    if zh:
        return f"现在是第{pos.current + 1}项议程（共{len(items)}项）：{item.title}，还剩{left}。"
    return f"We are on item {pos.current + 1} of {len(items)}: {item.title}, with {left} left."


def _agenda_next(state: MeetingState, _m) -> str:
    zh, pos, items = _zh(state), state.position, state.agenda
    if not items:
        return "这次会议没有议程，所以没有下一项。" if zh else "This meeting has no agenda, so there is nothing next on it."
    following = pos.next_index(len(items))
    if following is None:
        if pos.current is None:
            return "议程已经全部结束，后面没有别的议程了。" if zh else "The agenda is over; there are no more items."
        return f"这是最后一项议程：{items[pos.current].title}，后面没有了。" if zh else \
            f"Nothing: {items[pos.current].title} is the last item on the agenda."
    item = items[following]
    starts = phrases.duration(pos.item_left_s, state.language) if pos.item_left_s is not None else None
    if zh:
        return f"下一项是第{following + 1}项：{item.title}，{phrases.duration(item.seconds, 'zh')}" + \
            (f"，大约{starts}后开始。" if starts else "。")
    return f"Next is item {following + 1}: {item.title}, {phrases.duration(item.seconds, 'en')}" + \
        (f", starting in {starts}." if starts else ".")


def _time_left_item(state: MeetingState, m) -> str:
    pos = state.position
    if not state.agenda:
        return _no_agenda(state)
    if pos.current is None:
        return _agenda_current(state, m)
    item, left = state.agenda[pos.current], phrases.duration(pos.item_left_s, state.language)
    return f"这一项（{item.title}）还有{left}。" if _zh(state) else f"{item.title} has {left} left."


def _time_left_total(state: MeetingState, m) -> str:
    zh, pos = _zh(state), state.position
    if not state.agenda:
        ran = phrases.duration(state.now - state.started_at, state.language) if state.started_at else None
        if zh:
            return "这次会议没有议程，所以没有计划的结束时间" + (f"；已经开了{ran}。" if ran else "。")
        return "This meeting has no agenda, so it has no planned end" + (f"; it has run for {ran}." if ran else ".")
    if not pos.started:
        total = phrases.duration(pos.total_left_s, state.language)
        return f"议程还没开始，全部议程共{total}。" if zh else f"The agenda has not started; it runs {total} in all."
    if pos.current is None:
        over = phrases.duration(pos.overrun_s, state.language)
        return f"议程的时间已经用完，超出了{over}。" if zh else f"The agenda's time is up; we are {over} over."
    left = phrases.duration(pos.total_left_s, state.language)
    end = phrases.clock(state.now + pos.total_left_s)
    return f"整个议程还剩{left}，预计{end}结束。" if zh else f"{left.capitalize()} left on the agenda, ending at {end}."


def _elapsed(state: MeetingState, _m) -> str:
    if state.started_at is None:
        return "会议还没开始。" if _zh(state) else "The meeting has not started yet."
    ran, since = phrases.duration(state.now - state.started_at, state.language), phrases.clock(state.started_at)
    return f"会议已经开了{ran}，从{since}开始。" if _zh(state) else f"We have been meeting for {ran}, since {since}."


_TOPIC_STOP = frozenset("the a an about on of regarding what did say said he she they it this that just now".split())


def _topic_words(topic: str, language: str) -> list[str]:
    if language == "zh" or re.search(r"[\u4e00-\u9fff]", topic):
        core = re.sub(r"[的了吗呢？?。，,\s]|是怎么|怎么|什么|刚才|关于", "", topic)
        return [core[i:i + 2] for i in range(max(1, len(core) - 1))] if core else []
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9$.%'-]+", topic)]
    return [_stem(w) for w in words if w not in _TOPIC_STOP]


def _stem(word: str) -> str:
    return re.sub(r"(?:ies|es|s|ing|ed)$", "", word) if len(word) > 4 else word


def _said(state: MeetingState, m: re.Match) -> str:
    zh = _zh(state)
    groups = {k: v for k, v in m.groupdict().items() if v}
    named = groups.get("name") or groups.get("name2") or groups.get("name3")
    topic = (groups.get("topic") or groups.get("topic2") or groups.get("topic3") or "").strip(" ?？。.")
    uid, name = _person(state, named)
    if uid is None:
        return f"这次会议里没有叫{name}的人。" if zh else f"Nobody called {name} has been in this meeting."
    theirs = [ln for ln in state.lines if ln.speaker == uid]
    if not theirs:
        return f"我还没听到{name}发言。" if zh else f"I have not heard {name} say anything yet."
    words = _topic_words(topic, state.language)
    need = len(words) if len(words) <= 2 else max(2, round(len(words) * 0.6))

    def hits(text: str) -> int:
        low = text.lower() if not zh else text
        return sum(1 for w in set(words) if w in low)
    scored = [(hits(ln.text), ln) for ln in theirs] if words else [(1, ln) for ln in theirs[-2:]]
    best = [ln for score, ln in sorted(scored, key=lambda x: (-x[0], -x[1].t)) if score >= need][:2]
    if not best:                                 # "what did X say about <an agenda item>": what X said in its time
        best = [ln for ln in theirs if _during_item(state, topic, ln.t)][-2:]
    if not best:
        return f"我没有听到{name}谈{topic}。" if zh else f"I did not hear {name} say anything about {topic}."
    best.sort(key=lambda ln: ln.t)
    quoted = " ".join(f"“{ln.text}”" for ln in best)
    return f"{name}说：{quoted}" if zh else f"{name} said: {quoted}"


def _during_item(state: MeetingState, topic: str, t: float) -> bool:
    """Whether wall time `t` fell in the time of the agenda item that `topic` names."""
    if not state.agenda or not state.position.started or not topic:
        return False
    start = state.now - state.position.elapsed_s
    for i, item in enumerate(state.agenda):
        words = _topic_words(item.title, state.language)
        if words and sum(w in _topic_words(topic, state.language) for w in words) >= max(1, len(words) * 0.6):
            begin = sum(it.seconds for it in state.agenda[:i])
            return start + begin <= t < start + begin + item.seconds
    return False


def _decided(state: MeetingState, _m) -> str:
    decisions = state.notes.decisions
    if not decisions:
        return "目前还没有做出决定。" if _zh(state) else "Nothing has been decided yet."
    items = [d.text.rstrip("。.") for d in decisions]
    if _zh(state):
        return f"目前的决定有{len(items)}项：" + "；".join(items) + "。"
    return f"So far we decided {phrases.count(len(items), 'thing', 'things')}: " + "; ".join(items) + "."


def _actions(state: MeetingState, _m) -> str:
    items = state.notes.action_items
    if not items:
        return "目前还没有待办事项。" if _zh(state) else "There are no action items yet."
    people = state.people
    return phrases.action_items([(people.name(a.owner), a.task, a.due.text if a.due else None) for a in items],
                                state.language)


def _open(state: MeetingState, _m) -> str:
    items = state.notes.open_questions
    if not items:
        return "目前没有悬而未决的问题。" if _zh(state) else "No open questions so far."
    joined = "；".join(q.text.rstrip("。.？?") for q in items) if _zh(state) else \
        "; ".join(q.text.rstrip(".?") for q in items)
    return f"还没有定的问题：{joined}。" if _zh(state) else f"Still open: {joined}."


def _other_meeting(state: MeetingState, _m) -> str:
    return "我只知道这次会议的情况。" if _zh(state) else "I only know about this meeting, not other ones."


_ANSWERS = {"other_meeting": _other_meeting, "head_count": _head_count, "present": _present, "joined": _joined, "left": _left,
            "agenda_list": _agenda_list, "agenda_current": _agenda_current, "agenda_next": _agenda_next,
            "time_left_item": _time_left_item, "time_left_total": _time_left_total, "elapsed": _elapsed,
            "said": _said, "decided": _decided, "actions": _actions, "open": _open}


_NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                             "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_ZH_NUMBERS = {c: i for i, c in enumerate("零一二三四五六七八九十")}
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b|"
                     r"[零一二三四五六七八九十两]+(?=[个位人分钟秒小时项件天周月号])",
                     re.IGNORECASE)


def _numbers(text: str) -> set[float]:
    found = set()
    for token in _NUMBER.findall(text):
        low = token.lower()
        if low in _NUMBER_WORDS:
            found.add(float(_NUMBER_WORDS[low]))
        elif low[0].isdigit():
            found.add(float(low))
        elif len(low) == 1:
            found.add(float(_ZH_NUMBERS.get(low, 2)))
    return found


class Grounding:
    """Whether a sentence a model wrote about the meeting keeps to what is known: every number in it appears in
    the transcript or the room's state (a model that says "the meeting is 10 people" with two there does not)."""

    def __init__(self, state: MeetingState):
        known = " ".join(ln.text for ln in state.lines) + " " + state.prompt_facts()
        known += " " + " ".join(f"{i.title} {i.minutes:g}" for i in state.agenda)
        self.known = _numbers(known) | {float(len(state.agenda)), float(len(state.present)), 1.0}
        self.fallback = ("这个我在会议记录里找不到，不清楚。" if state.language == "zh"
                         else "I don't know that from this meeting.")

    def __call__(self, sentence: str) -> bool:
        return _numbers(sentence) <= self.known
