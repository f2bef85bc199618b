"""The scripted meetings of tests/data (format: tests/data/meetings/README.md) and how minutes are scored
against their answer keys. Used by the minutes tests and by bench.minutes."""
from __future__ import annotations

import json
import pathlib
import queue
import re
import threading
import time
from dataclasses import dataclass, field

DATA = pathlib.Path(__file__).parent / "data"
MEETINGS = DATA / "meetings"
HELDOUT = DATA / "heldout"


@dataclass
class Step:
    t: float
    speaker: str
    event: str = "say"               # "say", "join" or "leave"
    text: str = ""
    n: int | None = None             # the line's number in the script (lines with text only, from 1)
    expect: dict | None = None


@dataclass
class Meeting:
    id: str
    language: str
    title: str
    date: str
    agenda: list[dict]
    participants: dict[str, str]     # user id → name
    steps: list[Step]
    key: dict
    heldout: bool = False

    @property
    def lines(self) -> list[Step]:
        return [s for s in self.steps if s.event == "say"]

    def questions(self) -> list[Step]:
        return [s for s in self.lines if s.expect and s.expect.get("kind") != "general"]


def load(path: pathlib.Path) -> Meeting:
    raw = json.loads(path.read_text(encoding="utf-8"))
    steps, n = [], 0
    for entry in raw["lines"]:
        if "text" in entry:
            n += 1
            steps.append(Step(entry["t"], entry["speaker"], "say", entry["text"], n, entry.get("expect")))
        else:
            steps.append(Step(entry["t"], entry["speaker"], entry["event"]))
    return Meeting(raw["id"], raw["language"], raw["title"], raw["date"], raw["agenda"],
                   {p["user_id"]: p["name"] for p in raw["participants"]}, steps, raw["key"],
                   heldout=path.parent == HELDOUT)


def load_all(heldout: bool = False) -> list[Meeting]:
    folders = [MEETINGS] + ([HELDOUT] if heldout else [])
    return [load(p) for folder in folders for p in sorted(folder.glob("*.json"))]


# --- scoring ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9$.,%]+|[\u4e00-\u9fff]", re.IGNORECASE)
_LIGHT = frozenset("a an the to of for and or in on at it its this that we i you they be is are will by with".split())


def _tokens(text: str) -> set[str]:
    return {t.strip(".,") for t in _TOKEN.findall(text.lower()) if t.strip(".,") and t not in _LIGHT}


def supported(text: str, cited: list[str]) -> bool:
    """At least 60 % of the item's words (or Chinese characters) are in the lines it cites."""
    words = _tokens(text)
    if not words:
        return False
    source = _tokens(" ".join(cited))
    return len(words & source) / len(words) >= 0.6


def due_right(expected: list[str], got: str | None) -> bool:
    if not expected:
        return not got
    if not got:
        return False
    got = got.lower()
    return any(e.lower() in got or got in e.lower() for e in expected)


@dataclass
class Score:
    decisions: int = 0
    decisions_found: int = 0
    actions: int = 0
    actions_found: int = 0               # the lines match
    actions_right: int = 0               # … and owner and due are right
    questions: int = 0
    questions_found: int = 0
    invented: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)          # supported by a line, not in the key
    traps: list[str] = field(default_factory=list)          # taken from a not_items line
    wrong: list[str] = field(default_factory=list)          # matched, owner or due wrong

    def as_json(self) -> dict:
        return {"decision_recall": _ratio(self.decisions_found, self.decisions),
                "action_item_recall": _ratio(self.actions_right, self.actions),
                "action_item_recall_lines_only": _ratio(self.actions_found, self.actions),
                "open_question_recall": _ratio(self.questions_found, self.questions),
                "invented_items": len(self.invented), "extra_items": len(self.extra), "trap_items": len(self.traps),
                "key": {"decisions": self.decisions, "action_items": self.actions, "open_questions": self.questions},
                "found": {"decisions": self.decisions_found, "action_items": self.actions_right,
                          "open_questions": self.questions_found},
                "invented": self.invented, "extra": self.extra, "traps": self.traps, "wrong": self.wrong}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def score_minutes(minutes: dict, meeting: Meeting, line_of: dict[int, int], transcript: dict[int, str]) -> Score:
    """Minutes (the API's JSON) against the meeting's key. `line_of` maps script line numbers to the transcript's;
    `transcript` holds the transcript's text by line number, for checking what each item cites."""
    s, key = Score(), meeting.key
    names = {u.lower() for u in meeting.participants} | {n.lower() for n in meeting.participants.values()}
    traps = {line_of.get(n) for n in key.get("not_items", [])}

    def cited(item: dict) -> list[str]:
        return [transcript.get(n, "") for n in item.get("source_lines", [])]

    def check(item: dict, label: str) -> bool:
        lines = item.get("source_lines") or []
        text = item.get("text") or item.get("task") or ""
        if not lines or any(n not in transcript for n in lines) or not supported(text, cited(item)):
            s.invented.append(f"{label}: {text} {lines}")
            return False
        owner = item.get("owner")
        if label == "action" and owner is not None and str(owner).lower() not in names:
            s.invented.append(f"owner {owner} of: {text}")
            return False
        return True

    def says(item: dict, keywords: list[str]) -> bool:
        text = (item.get("text") or item.get("task") or "").lower()
        return not keywords or any(k.lower() in text for k in keywords)

    def match(expected: list[dict], got: list[dict], label: str) -> list[tuple[dict, dict | None]]:
        """An item matches a key entry when it cites one of its lines and says one of its keywords."""
        free, pairs = [g for g in got if check(g, label)], []
        for e in expected:
            mine = {line_of[n] for n in e["lines"] if n in line_of}
            hit = next((g for g in free if mine & set(g["source_lines"]) and says(g, e.get("keywords", []))), None)
            if hit is not None:
                free.remove(hit)
            pairs.append((e, hit))
        for g in free:
            (s.traps if set(g["source_lines"]) & traps else s.extra).append(f"{label}: {g.get('text') or g.get('task')}")
        return pairs

    decisions = match(key["decisions"], minutes["decisions"], "decision")
    s.decisions, s.decisions_found = len(decisions), sum(hit is not None for _, hit in decisions)
    actions = match(key["action_items"], minutes["action_items"], "action")
    s.actions = len(actions)
    for expected, hit in actions:
        if hit is None:
            continue
        s.actions_found += 1
        owner_ok = str(hit.get("owner_id") or hit.get("owner") or "").lower() in (
            expected["owner"], meeting.participants[expected["owner"]].lower())
        if owner_ok and due_right(expected["due"], hit.get("due")):
            s.actions_right += 1
        else:
            s.wrong.append(f"{hit.get('task')}: owner {hit.get('owner')} due {hit.get('due')!r}, "
                           f"expected {expected['owner']} {expected['due']}")
    questions = match(key["open_questions"], minutes["open_questions"], "question")
    s.questions, s.questions_found = len(questions), sum(hit is not None for _, hit in questions)
    return s


# --- questions about the meeting ------------------------------------------------------------

@dataclass
class Truth:
    """What the room's state says at the moment a question is answered."""
    present: list[str]
    absent: list[str]                        # people of the meeting who are not here now
    item_left_s: float | None = None
    total_left_s: float | None = None
    elapsed_s: float | None = None
    current: str | None = None               # the agenda item whose time it is, by the room's clock
    next: str | None = None
    live: bool = False                       # read off a live room (its clock may differ from the script's)


_NONE = re.compile(r"\bno\b|nothing|past the end|is over|time is up|没有|无|结束", re.IGNORECASE)
_DONT_KNOW = re.compile(r"\b(?:don't know|do not know|did not hear|didn't hear|have not heard|haven't heard|no record|"
                        r"nobody called|not sure)\b|没有听到|没听到|不知道|找不到|没有叫|不清楚|没有提到|没说过|没有发言",
                        re.IGNORECASE)
_EN_NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                          "thirteen fourteen fifteen sixteen".split())}
_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九十")} | {"两": 2}


def _first_number(text: str) -> int | None:
    m = re.search(r"\d+|\b(?:" + "|".join(_EN_NUMBERS) + r")\b|[零一二两三四五六七八九十](?=个|位|人)", text, re.IGNORECASE)
    if not m:
        return None
    token = m.group(0).lower()
    return int(token) if token.isdigit() else _EN_NUMBERS.get(token, _ZH_DIGITS.get(token))


_UNIT = re.compile(r"(\d+)\s*(hours?|小时|minutes?|分钟|分|seconds?|秒)", re.IGNORECASE)
_SECONDS = {"h": 3600, "小": 3600, "m": 60, "分": 60, "s": 1, "秒": 1}


def seconds_said(text: str) -> tuple[float, float] | None:
    """(seconds, tolerance) of the first duration in an answer: '4 minutes', '1 minute 20 seconds', '4分钟', '40秒'."""
    total, seconds_given, end = None, False, None
    for m in _UNIT.finditer(text):
        if end is not None and m.start() - end > 12:
            break
        unit = _SECONDS[m.group(2)[0].lower()]
        total = (total or 0) + int(m.group(1)) * unit
        seconds_given |= unit == 1
        end = m.end()
    return None if total is None else (float(total), 8.0 if seconds_given else 61.0)


def check_answer(expect: dict, answer: str, truth: Truth) -> tuple[bool, str]:
    """Whether an answer is right for its question's `expect`, and why not."""
    kind, low = expect["kind"], answer.lower()

    def named(name: str) -> bool:
        return name.lower() in low

    if kind == "head_count":
        got = _first_number(answer)
        return got == expect["people"] == len(truth.present), f"said {got}, {expect['people']} here"
    if kind == "present":
        missing = [n for n in expect["names"] if not named(n)]
        extra = [n for n in truth.absent if named(n)]
        return not missing and not extra, f"missing {missing}, not here {extra}"
    if kind == "agenda_list":
        missing = [t for t in expect["titles"] if not named(t)]
        return not missing, f"missing {missing}"
    if kind in ("agenda_current", "agenda_next"):
        title = expect.get("title")
        if truth.live and title is not None:  # by the room's clock, which a replay may have stretched
            title = truth.current if kind == "agenda_current" else truth.next
        if title is None:
            return bool(_NONE.search(low)), "should say there is none"
        return named(title), f"expected {title}"
    if kind in ("time_left_item", "time_left_total", "elapsed"):
        value = {"time_left_item": truth.item_left_s, "time_left_total": truth.total_left_s,
                 "elapsed": truth.elapsed_s}[kind]
        said = seconds_said(answer)
        if not value and _NONE.search(low):       # the agenda is over: saying so is the answer
            return True, ""
        if value is None or said is None:
            return False, f"said {said}, state {value}"
        return abs(said[0] - value) <= said[1], f"said {said[0]:.0f} s, state {value:.0f} s"
    if kind in ("said", "decided", "general"):
        return any(k.lower() in low for k in expect["keywords"]), f"none of {expect['keywords']}"
    if kind in ("joined", "left"):
        return named(expect["name"]), f"expected {expect['name']}"
    if kind == "unknown":
        return bool(_DONT_KNOW.search(answer)) and "“" not in answer, "should say it does not know"
    raise ValueError(f"unknown expect kind {kind!r}")


# --- replaying a meeting into a live room ------------------------------------------------------

class Seat:
    """One participant of a replay: a real WebSocket client whose messages a thread reads all the time (a
    reader that stops reading is closed by the server), keeping what the AI host says in chat."""

    def __init__(self, server, room_id: str, user_id: str, name: str):
        from tests.wsclient import MeetingClient
        self.client = MeetingClient(server, room_id, user_id, display_name=name)
        self.host_chats: queue.Queue = queue.Queue()
        self.host_slot: int | None = None
        self.host_state = ""                     # the host's latest status ("loading", "listening" …)
        self._open = True
        self._thread = threading.Thread(target=self._read, name=f"seat-{user_id}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from wire import protocol as p
        while self._open:
            try:
                msg = self.client.recv(0.5)
            except Exception:
                return
            self.client.received.clear()
            if isinstance(msg, p.Chat) and msg.slot == self.host_slot:
                self.host_chats.put((time.monotonic(), msg.text))
            elif isinstance(msg, p.HostStatus):
                self.host_state = msg.state

    def say(self, text: str) -> None:
        from wire import protocol as p
        self.client.send(p.Chat(text))

    def answer(self, after: float, timeout: float) -> str | None:
        """The host's next chat line that arrived after `after`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, text = self.host_chats.get(timeout=left)
            except queue.Empty:
                return None
            if at >= after and not _ANNOUNCEMENT.search(text):
                return text
        return None

    def leave(self, server, room_id: str) -> None:
        self._open = False
        self._thread.join(2)
        server.api("POST", "/api/meeting/leave", {"room_id": room_id, "user_id": self.client.user_id,
                                                  "token": self.client.token})
        self.client.close()


# What the host says as the agenda goes (pipeline.agenda.announcement), not an answer to anyone
_ANNOUNCEMENT = re.compile(r"^(?:Let's start with item \d+ of \d+: |Next, item \d+ of \d+: |"
                           r"(?:About )?\d+ (?:seconds?|minutes?)"
                           r"(?: \d+ seconds?)? left for .+\.$|That was the last agenda item\.$|第\d+项议程：|议程全部结束。$|"
                           r"[^，。（）]+还剩[^，。（）]+。$)")


@dataclass
class Asked:
    meeting: str
    n: int
    question: str
    expect: dict
    answer: str | None
    ok: bool
    why: str
    answer_ms: float | None


@dataclass
class Replay:
    meeting: Meeting
    room_id: str
    asked: list[Asked]
    minutes: dict
    minutes_ms: float
    line_of: dict[int, int]                 # script line → transcript line
    transcript: dict[int, str]              # transcript line → text
    markdown: str = ""
    answers: dict[int, str | None] = field(default_factory=dict)    # every question's answer, by script line

    def score(self) -> Score:
        return score_minutes(self.minutes, self.meeting, self.line_of, self.transcript)


def truth_now(server, room_id: str, meeting: Meeting) -> Truth:
    """The room's state now, from its API."""
    info = server.api("GET", f"/api/meeting/{room_id}")[1]
    here = [p["display_name"] for p in info["participants"] if p["connected"] and not p["is_host"]]
    state = info["agenda_state"]
    elapsed = time.time() - info["started_at"] if info.get("started_at") else None
    truth = Truth(here, [n for n in meeting.participants.values() if n not in here], state["item_left_s"],
                  state["total_left_s"], elapsed)
    titles = [a["title"] for a in info["agenda"]]
    truth.current = titles[state["current"]] if state["current"] is not None else None
    truth.next = titles[state["next"]] if state["next"] is not None else None
    truth.live = True
    return truth


def replay(server, meeting: Meeting, room_id: str, scale: float = 1 / 30, speak=None, answer_timeout: float = 30,
           load_timeout: float = 300) -> Replay:
    """Play `meeting` into a new room of `server` with its AI host: people join and leave as scripted and say their
    lines as chat (or, with `speak(seat, text)`, through the microphone), the host's answers to the scripted
    questions are checked against the room's state when they arrive, and the minutes are asked for at the end.
    The clock runs `1/scale` times faster than the script's (the agenda's minutes are scaled the same way)."""
    agenda = [{"title": a["title"], "minutes": round(a["minutes"] * scale, 4)} for a in meeting.agenda]
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "organiser", "room_id": room_id,
                                                               "language": meeting.language, "agenda": agenda})
    assert status == 201, body
    host_slot, seats, asked, said, answers = body["host"]["slot"], {}, [], [], {}
    t0, shift = time.monotonic(), 0.0
    for step in meeting.steps:
        delay = t0 + step.t * scale + shift - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if step.event == "join":
            seat = seats[step.speaker] = Seat(server, room_id, step.speaker, meeting.participants[step.speaker])
            seat.host_slot = host_slot
            if len(seats) == 1:                  # the host answers once its models are there
                _wait_listening(seat, load_timeout)
                t0 = time.monotonic() - step.t * scale
            continue
        if step.event == "leave":
            seats.pop(step.speaker).leave(server, room_id)
            continue
        seat = seats[step.speaker]
        question = step.expect is not None or step.text.lstrip().startswith("@AI")
        sent = time.monotonic()
        if speak is not None and not question:
            speak(seat, step.text)
        else:
            seat.say(step.text)
        said.append(step)
        if question:
            answer = answers[step.n] = seat.answer(sent, answer_timeout)
            got = time.monotonic()
            shift += got - sent
            if step.expect is not None:
                ok, why = check_answer(step.expect, answer or "", truth_now(server, room_id, meeting))
                asked.append(Asked(meeting.id, step.n, step.text, step.expect, answer, ok, why,
                                   (got - sent) * 1000 if answer else None))
    time.sleep(1.0 if speak is None else 3.0)   # the last words reach the transcript (speech: the VAD's end)
    t = time.monotonic()
    status, minutes = server.api("GET", f"/api/meeting/{room_id}/minutes", timeout=120)
    minutes_ms = (time.monotonic() - t) * 1000
    assert status == 200, minutes
    markdown = _get_text(server, f"/api/meeting/{room_id}/minutes?format=markdown")
    lines = server.api("GET", f"/api/meeting/{room_id}/transcript")[1]["lines"]
    line_of = map_lines(said, lines, meeting, by_order=speak is not None)
    for seat in list(seats.values()):
        seat.leave(server, room_id)
    return Replay(meeting, room_id, asked, minutes, minutes_ms, line_of, {ln["n"]: ln["text"] for ln in lines},
                  markdown, answers)


def _wait_listening(seat: Seat, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while seat.host_state != "listening":
        if time.monotonic() > deadline:
            raise AssertionError(f"the AI host did not get ready (it is {seat.host_state!r})")
        time.sleep(0.05)


def _get_text(server, path: str) -> str:
    import urllib.request
    base = getattr(server, "url", None) or server.ws_url.replace("ws://", "http://")
    with urllib.request.urlopen(base + path, timeout=60) as resp:
        return resp.read().decode()


def map_lines(said: list[Step], lines: list[dict], meeting: Meeting, by_order: bool = False) -> dict[int, int]:
    """Script line → transcript line: the same speaker's next line with the same text (chat), or, for speech
    (`by_order`), the one of their next three with the most words in common (recognition changes words)."""
    mine: dict[str, list[dict]] = {}
    for ln in lines:
        mine.setdefault(ln["speaker"], []).append(ln)
    out = {}
    for step in said:
        pending = mine.get(step.speaker, [])
        if by_order and not step.text.lstrip().startswith("@AI"):
            words = _tokens(step.text)
            scored = [(len(words & _tokens(ln["text"])) / max(1, len(words)), i) for i, ln in enumerate(pending[:3])]
            best = max(scored, default=(0.0, -1))
            found = best[1] if best[0] >= 0.3 else None
        else:
            found = next((i for i, ln in enumerate(pending) if ln["text"] == step.text.strip()), None)
        if found is not None:
            out[step.n] = pending[found]["n"]
            del pending[:found + 1]
    return out


def offline_questions(meeting: Meeting):
    """The meeting's scripted questions with the room's state at each, computed from the script alone (the
    agenda starts at t = 0, times are the script's): (step, question, MeetingState, Truth) for each."""
    from meeting.agenda import AgendaClock, parse_agenda
    from pipeline import facts
    from pipeline.addressing import Addressing
    from pipeline.notes import People, Said, extract_notes
    from pipeline.transcript import Line
    addressed, clock = Addressing("AI"), AgendaClock(parse_agenda(meeting.agenda))
    clock.start(0.0)
    stays, present, lines = [], [], []
    for step in meeting.steps:
        name = meeting.participants[step.speaker]
        if step.event == "join":
            stays.append(facts.Stay(step.speaker, name, step.t))
            present.append(step.speaker)
        elif step.event == "leave":
            i = max(i for i, s in enumerate(stays) if s.user_id == step.speaker)
            stays[i] = facts.Stay(step.speaker, name, stays[i].joined_at, step.t)
            present.remove(step.speaker)
        elif (request := addressed.match(step.text, "chat")) is None:
            lines.append(Line(step.speaker, name, step.text, step.t, "chat", step.n))
        elif step.expect is not None:
            people, upto = People((s.user_id, s.name) for s in stays), list(lines)
            position = clock.position(step.t)
            state = facts.MeetingState(meeting.language, "AI", [meeting.participants[u] for u in present], list(stays),
                                       clock.items, position, upto, 0.0, step.t,
                                       lambda upto=upto, people=people: extract_notes(
                                           [Said(ln.n, ln.speaker, ln.text) for ln in upto], people, meeting.language))
            truth = Truth([meeting.participants[u] for u in present],
                          [n for u, n in meeting.participants.items() if u not in present],
                          position.item_left_s, position.total_left_s, step.t)
            yield step, request.text, state, truth
