"""Questions about the meeting answered exactly from the room's state: the scripted meetings' questions (with the
state each was asked in), how times and counts are said, and the check on what a model says about the meeting."""
import pytest

from meeting.agenda import AgendaClock, AgendaItem
from pipeline import facts, phrases
from pipeline.transcript import Line
from tests.meetings import check_answer, load_all, offline_questions

MEETINGS = load_all()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_scripted_questions_are_answered_from_the_state(language):
    results = []
    for meeting in [m for m in MEETINGS if m.language == language]:
        for step, question, state, truth in offline_questions(meeting):
            if step.expect["kind"] == "general":
                assert facts.ask(question, state) is None, question         # left to the language model
                continue
            answer = facts.ask(question, state) or ""
            results.append((check_answer(step.expect, answer, truth), meeting.id, question, answer))
    assert len(results) >= 15
    wrong = [r for r in results if not r[0][0]]
    assert len(wrong) <= 0.1 * len(results), wrong


def state(present=("Ann", "Bob"), agenda=(), at=0.0, lines=(), language="en") -> facts.MeetingState:
    clock = AgendaClock(list(agenda))
    clock.start(0.0)
    stays = [facts.Stay(n.lower(), n, 0.0) for n in present]
    return facts.MeetingState(language, "AI", list(present), stays, clock.items, clock.position(at), list(lines),
                              0.0, at)


@pytest.mark.parametrize("question, expected", [
    ("how many people are in this meeting?", "There are 2 people here: Ann and Bob, plus me, the AI host."),
    ("who's here?", "Here now: Ann and Bob, 2 people, and me."),
    ("how many people attended the last meeting?", "I only know about this meeting, not other ones."),
    ("what's next on the agenda?", "Next is item 2: Budget, 10 minutes, starting in 4 minutes."),
    ("how much time is left for this item?", "Intro has 4 minutes left."),
    ("what is on the agenda?", "The agenda has 2 items: 1, Intro, 5 minutes; 2, Budget, 10 minutes."),
    ("what did Bob say about the budget?", "Bob said: “The budget should double.”"),
    ("what did Ann say about the office move?", "I did not hear Ann say anything about the office move."),
    ("what did Zed say about it?", "Nobody called Zed has been in this meeting."),
])
def test_exact_answers(question, expected):
    lines = [Line("bob", "Bob", "The budget should double.", 30.0, "chat", 1),
             Line("ann", "Ann", "Let's keep it short.", 40.0, "chat", 2)]
    got = facts.ask(question, state(agenda=[AgendaItem("Intro", 5), AgendaItem("Budget", 10)], at=60.0, lines=lines))
    assert got == expected


def test_chinese_answers():
    s = state(present=("王芳", "李强"), agenda=[AgendaItem("预算", 10)], at=90.0, language="zh")
    assert facts.ask("现在会上有几个人？", s) == "现在会上有2个人：王芳、李强。另外还有我，AI主持人。"
    assert facts.ask("这一项还剩多少时间？", s) == "这一项（预算）还有大约9分钟。"
    assert facts.ask("下一项议程是什么？", s) == "这是最后一项议程：预算，后面没有了。"


@pytest.mark.parametrize("seconds, en, zh", [
    (0, "0 seconds", "0秒"), (1, "1 second", "1秒"), (40, "40 seconds", "40秒"), (61, "1 minute", "1分钟"),
    (80, "1 minute 20 seconds", "1分20秒"), (240, "4 minutes", "4分钟"), (250, "about 4 minutes", "大约4分钟"),
    (5400, "1 hour 30 minutes", "1小时30分钟"),
])
def test_durations(seconds, en, zh):
    assert phrases.duration(seconds, "en") == en and phrases.duration(seconds, "zh") == zh


def test_a_model_may_not_invent_numbers_about_the_meeting():
    keep = facts.Grounding(state(lines=[Line("bob", "Bob", "We need 3 more testers.", 1.0, "chat", 1)]))
    assert not keep("The meeting is 10 people.")
    assert not keep("There are ten of you.")
    assert keep("There are 2 of you here.") and keep("Bob asked for 3 more testers.") and keep("Hello Ann!")
    assert keep.fallback == "I don't know that from this meeting."


def test_questions_about_the_meeting_are_told_apart():
    s = state()
    assert facts.about_meeting("what did we decide?", s) and facts.about_meeting("did Bob agree?", s)
    assert not facts.about_meeting("what is the capital of France?", s)
