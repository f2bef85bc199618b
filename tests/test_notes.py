"""Meeting notes from what people said: decisions, action items (owner, task, due) and open questions, each
citing its lines; on the scripted meetings and on small conversations, in English and Chinese."""
import datetime as dt

import pytest

from pipeline.addressing import Addressing
from pipeline.notes import People, Said, extract_notes, find_due
from tests.meetings import load_all, score_minutes

MEETINGS = load_all()


def notes_json(notes, people) -> dict:
    return {"decisions": [{"text": d.text, "source_lines": d.source_lines} for d in notes.decisions],
            "action_items": [{"owner": people.name(a.owner), "owner_id": a.owner, "task": a.task,
                              "due": a.due.text if a.due else None, "source_lines": a.source_lines}
                             for a in notes.action_items],
            "open_questions": [{"text": q.text, "source_lines": q.source_lines} for q in notes.open_questions]}


def minutes_of(meeting) -> dict:
    people = People(meeting.participants.items())
    addressed = Addressing("AI")
    said = [Said(s.n, s.speaker, s.text) for s in meeting.lines if addressed.match(s.text, "chat") is None]
    return notes_json(extract_notes(said, people, meeting.language, dt.date.fromisoformat(meeting.date)), people)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_scripted_meetings_recall_without_inventing(language):
    totals = {"decisions": [0, 0], "action_items": [0, 0]}
    for meeting in [m for m in MEETINGS if m.language == language]:
        transcript = {s.n: s.text for s in meeting.lines}
        score = score_minutes(minutes_of(meeting), meeting, {n: n for n in transcript}, transcript).as_json()
        assert score["invented_items"] == 0 and score["trap_items"] == 0, (meeting.id, score)
        for kind in totals:
            totals[kind][0] += score["found"][kind]
            totals[kind][1] += score["key"][kind]
    for kind, (found, expected) in totals.items():
        assert found / expected >= 0.8, (kind, found, expected)


def said(*lines: tuple[str, str]) -> list[Said]:
    return [Said(n, who, text) for n, (who, text) in enumerate(lines, 1)]


EN = People([("ann", "Ann Lee"), ("bob", "Bob"), ("cy", "Cy")])
ZH = People([("wangfang", "王芳"), ("liqiang", "李强"), ("huangtao", "黄涛")])


@pytest.mark.parametrize("lines, kind, expected", [
    # a proposal someone else agrees to is a decision; one turned down is not
    (said(("ann", "How about we move the demo to Thursday?"), ("bob", "Works for me.")), "decisions",
     [("Move the demo to Thursday", [1, 2])]),
    (said(("ann", "How about we move the demo to Thursday?"), ("bob", "No, Thursday is too late.")), "decisions", []),
    (said(("ann", "Should we switch vendors?"), ("bob", "Let's go with that then.")), "decisions",
     [("Switch vendors", [1, 2])]),
    # a request answered with a yes; declined, then taken by someone else
    (said(("ann", "Bob, could you send the slides by Friday?"), ("bob", "Sure.")), "action_items",
     [("bob", "Send the slides", "Friday", [1, 2])]),
    (said(("ann", "Bob, can you update the wiki?"), ("bob", "I can't, I'm swamped this week."),
          ("cy", "I'll take it, by Monday.")), "action_items", [("cy", "Update the wiki", "Monday", [1, 2, 3])]),
    # an assignment the owner refuses is taken back
    (said(("ann", "Cy will draft the announcement."), ("cy", "No, I can't take that on.")), "action_items", []),
    # small talk is not a task; "let me know" is not one either
    (said(("bob", "I'll grab a coffee before we start."), ("ann", "Let me know if you need anything.")),
     "action_items", []),
    (said(("bob", "Let me write up the release checklist so nothing falls through the cracks.")), "action_items",
     [("bob", "Write up the release checklist", None, [1])]),
    # an alias of a display name ("Ann" for "Ann Lee")
    (said(("bob", "Ann will handle the budget review by the end of the month.")), "action_items",
     [("ann", "Handle the budget review", "the end of the month", [1])]),
    # Chinese: the object before the verb, a request and its yes, a refusal handed on
    (said(("liqiang", "导出的测试用例我来写，周四之前发给大家。")), "action_items",
     [("liqiang", "写导出的测试用例", "周四之前", [1])]),
    (said(("wangfang", "李强，预算表你整理一下，明天下班前发我？"), ("liqiang", "没问题。")), "action_items",
     [("liqiang", "整理预算表", "明天下班前", [1, 2])]),
    (said(("wangfang", "那就用“夏日焕新”吧，大家没意见的话就这么定了。")), "decisions", [("用“夏日焕新”", [1])]),
    (said(("huangtao", "我先去倒杯水。")), "action_items", []),
    (said(("wangfang", "要不要把上线推迟一周？"), ("liqiang", "这个我也说不准，下次再议。")), "open_questions",
     [("要不要把上线推迟一周？", [1, 2])]),
])
def test_conversations(lines, kind, expected):
    people = ZH if any("\u4e00" <= c <= "\u9fff" for ln in lines for c in ln.text) else EN
    language = "zh" if people is ZH else "en"
    notes = extract_notes(lines, people, language, dt.date(2026, 3, 2))
    if kind == "decisions":
        got = [(d.text, d.source_lines) for d in notes.decisions]
    elif kind == "open_questions":
        got = [(q.text, q.source_lines) for q in notes.open_questions]
    else:
        got = [(a.owner, a.task, a.due.text if a.due else None, a.source_lines) for a in notes.action_items]
    assert got == expected


@pytest.mark.parametrize("text, language, said_as, day", [
    ("I'll send it by Friday.", "en", "Friday", "2026-03-06"),
    ("by next Tuesday's sync", "en", "next Tuesday's sync", "2026-03-10"),
    ("due the 15th", "en", "the 15th", "2026-03-15"),
    ("by the end of the month", "en", "the end of the month", "2026-03-31"),
    ("tomorrow morning works", "en", "tomorrow morning", "2026-03-03"),
    ("I'll sync on Monday and get it to you by Wednesday", "en", "Wednesday", "2026-03-04"),
    ("周五之前发给大家", "zh", "周五之前", "2026-03-06"),
    ("下周二例会前给个排期", "zh", "下周二例会前", "2026-03-10"),
    ("明天下班前发我", "zh", "明天下班前", "2026-03-03"),
    ("15号之前", "zh", "15号之前", "2026-03-15"),
    ("月底之前谈下来", "zh", "月底之前", "2026-03-31"),
])
def test_deadlines_as_said_and_as_days(text, language, said_as, day):
    due = find_due(text, language, dt.date(2026, 3, 2))           # a Monday
    assert due is not None and due.text == said_as and due.date == dt.date.fromisoformat(day)


def test_no_deadline_in_plain_words():
    assert find_due("We talked about the budget.", "en") is None
    assert find_due("我们聊了预算。", "zh") is None


def test_names_and_their_aliases():
    people = People([("ml", "Maria Lopez"), ("hz", "黄涛"), ("oy", "欧阳娜娜"), ("m2", "Maria Chen")])
    assert people.resolve("黄哥") == "hz" and people.resolve("小黄") == "hz" and people.resolve("娜娜") == "oy"
    assert people.resolve("maria") is None                  # two Marias: the first name names nobody
    assert people.mentioned("Ask Maria Lopez and 黄总") == ["ml", "hz"]
