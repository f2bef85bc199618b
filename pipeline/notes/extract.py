"""Decisions, action items and open questions from what people said, each pointing to the lines it comes from.

One pass over the meeting's lines, in order, with what is still waiting for an answer: a proposal waits for
someone else's "agreed" (or "no"), a request for its addressee's "sure" (or "I can't", after which anyone
may take it), a question for an answer (or "no idea yet"). What a line says comes from the language's
patterns (`english`, `chinese`); who is meant by a name, from `People`. Nothing is written that no line says.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.notes import chinese, english
from pipeline.notes.dates import Due, find_due, strip_due
from pipeline.notes.people import People

WAIT_LINES = 4                  # lines a proposal, request or question waits for its answer


@dataclass(frozen=True)
class Said:
    """One line of the meeting as the notes see it."""
    n: int
    speaker: str
    text: str


@dataclass
class Decision:
    text: str
    source_lines: list[int]
    explicit: bool = field(default=False, compare=False)    # said as a decision, not only a proposal agreed to


@dataclass
class ActionItem:
    owner: str | None               # a participant's user id
    task: str
    due: Due | None
    source_lines: list[int]


@dataclass
class OpenQuestion:
    text: str
    source_lines: list[int]


@dataclass
class Notes:
    decisions: list[Decision] = field(default_factory=list)
    action_items: list[ActionItem] = field(default_factory=list)
    open_questions: list[OpenQuestion] = field(default_factory=list)


@dataclass
class _Waiting:
    kind: str                       # "proposal", "request", "assigned", "question"
    text: str
    n: int
    speaker: str
    owner: str | None = None
    due: Due | None = None
    declined: set[str] = field(default_factory=set)
    item: ActionItem | None = None  # for "assigned": the item a refusal takes back
    lines: list[int] = field(default_factory=list)
    age: int = 0

    def __post_init__(self):
        self.lines = sorted(set(self.lines) | {self.n})


class _Pass:
    def __init__(self, people: People, language: str, day: dt.date | None):
        self.people, self.language, self.day = people, language, day
        self.rules = chinese if language == "zh" else english
        self.notes = Notes()
        self.waiting: list[_Waiting] = []
        self.before: tuple[int, str] | None = None      # the sentence said just before the current one
        self.recent: list[tuple[int, str]] = []         # the sentences of the last lines, oldest first
        self.accepted_by: set[str] = set()             # who took on a request in the current line

    # --- one line -----------------------------------------------------------------------------

    def line(self, said: Said) -> None:
        r, sentences = self.rules, self.rules.sentences(said.text)
        sentences = [s for s in sentences if not r.errand(s)]
        decided = [(s, d) for s in sentences if (d := r.decision(s))]
        if decided:                                  # an explicit decision settles what was proposed
            self._decided(said, *decided[0])
        self.accepted_by = set()
        for s in sentences:
            self.sentence(said, s, skip_proposals=bool(decided))
            self.before = (said.n, s)
        self.recent = (self.recent + [(said.n, s) for s in sentences])[-12:]
        for waiting in self.waiting:
            waiting.age += 1
        self.waiting = [w for w in self.waiting if w.age <= WAIT_LINES]

    def sentence(self, said: Said, s: str, skip_proposals: bool) -> None:
        r, who = self.rules, said.speaker
        commit = r.commitment(s)
        if commit and said.speaker in self.accepted_by and r.leans_on_context(commit):
            commit = None                            # "Sure. I'll base it on …": how, not another task
        if r.rejects(s):
            self._refuse(said)
        elif r.accepts(s) or commit == "":
            if self._accept_request(said, s, commit):
                commit = None
            elif not skip_proposals and (p := self._take("proposal", who)):
                self._decide(p.text, p.lines + [said.n])
        if r.decision(s) == "" and not skip_proposals and (p := self._take("proposal", who, any_speaker=True)):
            self._decide(p.text, p.lines + [said.n])
        if commit:
            self._commit(said, s, commit)
        if (asked := r.request(s, self.people)) is not None and asked[0] != who:
            owner, task = asked
            base = self._take_declined() if r.is_referential(task) else None
            if base is not None:
                self.waiting.append(_Waiting("request", base.text, said.n, who, owner, self._due(s) or base.due,
                                             lines=base.lines))
            else:
                task, lines = self._in_context(task)
                self.waiting.append(_Waiting("request", task, said.n, who, owner, self._due(s), lines=lines))
        elif (given := r.assignment(s, self.people)) is not None and given[0] != who:
            self._assign(said, s, *given)
        elif not r.decision(s) and (text := r.proposal(s)):
            self.waiting.append(_Waiting("proposal", text, said.n, who))
        deferred = r.deferral(s)
        if deferred is not None or (r.unknown_reply(s) and self._find("question", who)):
            question = self._take("question", who, any_speaker=True)
            if question is not None:
                self._open(question.text, [question.n, said.n])
            elif deferred:
                self._open(deferred, [said.n])
        if r.open_question(s):
            self._ask(said, s)

    # --- decisions ----------------------------------------------------------------------------

    def _decided(self, said: Said, sentence: str, text: str) -> None:
        """An explicit decision ("so we're going with X", "就这么定了"): of what was proposed when it accepts a
        proposal ("I think that works, from next week on" adds to it), else of its own words."""
        proposal = self._take("proposal", said.speaker, any_speaker=True)
        if proposal is None:
            self._decide(text, [said.n], explicit=True)
            return
        lines = proposal.lines + [said.n]
        if _overlap(proposal.text, text) >= 0.3:
            self._decide(text, lines, explicit=True)
        elif self.rules.accepts(sentence):
            joiner = "；" if self.language == "zh" else "; "
            added = re.sub(r"^(?:就|那就|then|so)\s*", "", self.rules.clean(self.rules.strip_accept(text)))
            self._decide(proposal.text + (joiner + added if added and not self._vague(added) else ""), lines, True)
        else:
            self._decide(text, [said.n], explicit=True)

    def _decide(self, text: str, lines: list[int], explicit: bool = False) -> None:
        if self._vague(text):                        # "两分钟可以", "this plan": say which, from the lines before
            best = max(self.recent, key=lambda ns: (_overlap(self._gist(text), ns[1]),
                                                    not self.rules.is_question(ns[1]), ns[0]), default=None)
            if best is not None and _overlap(self._gist(text), best[1]) >= 0.5:
                text, lines = self.rules.capital(self.rules.clean(best[1])), [best[0]] + lines
        self.notes.decisions.append(Decision(text, sorted(set(lines)), explicit))

    def _gist(self, text: str) -> str:
        return self.rules.REFERRING.sub(" ", text)

    def _vague(self, text: str) -> bool:
        gist = self._gist(text).strip()
        return len(re.sub(r"\W", "", gist)) < 4 if self.language == "zh" else len(gist.split()) < 2

    # --- what waits for an answer -------------------------------------------------------------

    def _find(self, kind: str, speaker: str, any_speaker: bool = False) -> _Waiting | None:
        for w in reversed(self.waiting):
            if w.kind == kind and (any_speaker or w.speaker != speaker):
                return w
        return None

    def _take(self, kind: str, speaker: str, any_speaker: bool = False) -> _Waiting | None:
        w = self._find(kind, speaker, any_speaker)
        if w is not None:
            self.waiting.remove(w)
        return w

    def _take_declined(self) -> _Waiting | None:
        for w in reversed(self.waiting):
            if w.kind == "request" and w.declined:
                self.waiting.remove(w)
                return w
        return None

    def _request_for(self, speaker: str) -> _Waiting | None:
        """The request `speaker` may take on: one put to them, to anyone, or one declined (even their own)."""
        for w in reversed(self.waiting):
            if w.kind == "request" and speaker not in w.declined and (w.speaker != speaker or w.declined) and \
                    (w.owner == speaker or w.owner is None):
                return w
        return None

    def _refuse(self, said: Said) -> None:
        for w in reversed(self.waiting):
            if w.kind in ("request", "assigned") and w.owner == said.speaker:
                if w.kind == "assigned" and w.item in self.notes.action_items:
                    self.notes.action_items.remove(w.item)
                w.kind, w.owner = "request", None
                w.declined.add(said.speaker)
                w.lines = sorted(set(w.lines) | {said.n})
                return
            if w.kind == "proposal" and w.speaker != said.speaker:
                self.waiting.remove(w)
                return

    def _accept_request(self, said: Said, s: str, commit: str | None) -> bool:
        assigned = next((w for w in reversed(self.waiting) if w.kind == "assigned" and w.owner == said.speaker), None)
        if assigned is not None:
            self.waiting.remove(assigned)
            assigned.item.source_lines.append(said.n)
            assigned.item.due = assigned.item.due or self._due(s)
            return True
        w = self._request_for(said.speaker)
        if w is None:
            return False
        self.waiting.remove(w)
        self.accepted_by.add(said.speaker)
        self._add_item(said.speaker, w.text, self._due(s) or w.due, w.lines + [said.n])   # the reply's date is the later word
        return True

    def _commit(self, said: Said, s: str, task: str) -> None:
        w = self._request_for(said.speaker)
        if w is not None and (self.rules.is_referential_task(task) or _overlap(task, w.text) >= 0.3
                              or self.rules.leans_on_context(task)):
            self.waiting.remove(w)                   # "Sure, I'll draft it by Thursday": the request's task
            self.accepted_by.add(said.speaker)
            self._add_item(said.speaker, w.text, self._due(s) or w.due, w.lines + [said.n])
            return
        task, lines = self._in_context(self._task_words(task))
        self._add_item(said.speaker, task, self._due(s), lines + [said.n])

    def _assign(self, said: Said, s: str, owner: str, task: str, firm: bool) -> None:
        due = self._due(s)
        if self.rules.is_referential(task) and (base := self._take_declined()) is not None:
            task, lines = base.text, base.lines
        else:
            task, lines = self._in_context(self._task_words(task))
        if firm:
            item = self._add_item(owner, task, due, lines + [said.n])
            self.waiting.append(_Waiting("assigned", task, said.n, said.speaker, owner, due, item=item, lines=lines))
        else:
            self.waiting.append(_Waiting("request", task, said.n, said.speaker, owner, due, lines=lines))

    def _in_context(self, task: str) -> tuple[str, list[int]]:
        """A task that leans on what was said just before ("handle updating it") carries that sentence along."""
        if not self.rules.leans_on_context(task) or self.before is None:
            return task, []
        n, sentence = self.before
        context = self.rules.clean(sentence)
        if not context or self.rules.is_question(sentence) or len(context) > 160:
            return task, []
        return (f"{task}（{context}）" if self.language == "zh" else f"{task} ({context})"), [n]

    def _ask(self, said: Said, s: str) -> None:
        questions = [q for q in self.rules.sentences(said.text) if self.rules.is_question(q)]
        self.waiting = [w for w in self.waiting if w.kind != "question"]
        self.waiting.append(_Waiting("question", " ".join(questions) or s, said.n, said.speaker))

    # --- results ------------------------------------------------------------------------------

    def _due(self, s: str) -> Due | None:
        return find_due(s, self.language, self.day)

    def _task_words(self, task: str) -> str:
        return self.rules.capital(self.rules.clean_task(strip_due(task, self.language)))

    def _add_item(self, owner: str, task: str, due: Due | None, lines: list[int]) -> ActionItem:
        task = self._task_words(task)
        for item in self.notes.action_items:      # the same task said again: one item, more lines
            if item.owner == owner and _overlap(item.task, task) >= 0.6:
                item.source_lines = sorted(set(item.source_lines + lines))
                item.due = item.due or due
                return item
        item = ActionItem(owner, task, due, sorted(set(lines)))
        self.notes.action_items.append(item)
        return item

    def _open(self, text: str, lines: list[int]) -> None:
        if not any(set(q.source_lines) & set(lines) for q in self.notes.open_questions):
            self.notes.open_questions.append(OpenQuestion(text, sorted(set(lines))))


def extract_notes(lines: Sequence[Said], people: People, language: str = "en", day: dt.date | None = None) -> Notes:
    """The notes of a meeting. `lines` are what people said (not the AI host, not what was asked of it)."""
    work = _Pass(people, language, day)
    for said in lines:
        work.line(said)
    return _merge(work.notes)


def _merge(notes: Notes) -> Notes:
    """One decision per thing decided: a decision that repeats an earlier one, or says it again in other words
    right after it ("I like that." — "Let's do it: from now on …"), joins it and keeps the fuller words."""
    merged: list[Decision] = []
    for d in notes.decisions:
        same = next((m for m in merged if _overlap(m.text, d.text) >= 0.5 or set(m.source_lines) & set(d.source_lines)
                     or (min(d.source_lines) - max(m.source_lines) <= 2 and _overlap(m.text, d.text) >= 0.25)), None)
        if same is None:
            merged.append(d)
        else:
            same.source_lines = sorted(set(same.source_lines + d.source_lines))
            if d.explicit and not same.explicit:     # what was said as the decision, not what was proposed
                same.text, same.explicit = d.text, True
    notes.decisions = merged
    return notes


def _short(text: str, language: str) -> bool:
    return len(re.sub(r"\W", "", text)) < 6 if language == "zh" else len(text.split()) < 4


_TOKEN = re.compile(r"[a-z0-9$.]+|[\u4e00-\u9fff]", re.IGNORECASE)
_LIGHT = frozenset("a an the to of for and or in on at it its this that we i you they be is are will".split())


def _overlap(a: str, b: str) -> float:
    """Share of the shorter text's words that the other has too."""
    ta = {t for t in _TOKEN.findall(a.lower()) if t not in _LIGHT}
    tb = {t for t in _TOKEN.findall(b.lower()) if t not in _LIGHT}
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / min(len(ta), len(tb))
