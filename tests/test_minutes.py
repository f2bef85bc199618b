"""Minutes from a room's record: the document, the spoken short form, what is kept after a room empties, and the
API's answers (the live replays of scripted meetings are in test_minutes_live.py)."""
import re

from pipeline.facts import Stay
from pipeline.hosts import MinutesStore
from pipeline.minutes import MeetingRecord, make_minutes
from pipeline.transcript import Line
from tests.meetings import load_all

MEETINGS = {m.id: m for m in load_all()}


def record_of(meeting, end: float | None = None) -> MeetingRecord:
    lines, stays = [], {}
    for step in meeting.steps:
        name = meeting.participants[step.speaker]
        if step.event == "join":
            stays[step.speaker] = Stay(step.speaker, name, 1000.0 + step.t)
        elif step.event == "leave":
            stays[step.speaker] = Stay(step.speaker, name, stays[step.speaker].joined_at, 1000.0 + step.t)
        else:
            lines.append(Line(step.speaker, name, step.text, 1000.0 + step.t, "chat", step.n))
    return MeetingRecord(meeting.id, meeting.language, "ai-host", "AI", lines, list(stays.values()), [],
                         1000.0, end)


def test_minutes_of_a_meeting():
    meeting = MEETINGS["en_launch"]
    minutes = make_minutes(record_of(meeting, end=2800.0), now=2900.0).as_json()
    assert minutes["duration_s"] == 1800.0 and minutes["summary_by"] == "notes"
    assert {p["name"] for p in minutes["participants"]} == set(meeting.participants.values())
    assert [a["owner"] for a in minutes["action_items"]] == ["Priya", "Priya", "Kenji", "Tom", "Dev"]
    kenji = minutes["action_items"][2]
    assert kenji["due"] == "the 15th" and kenji["due_date"] is not None and kenji["source_lines"] == [36, 37]
    summary = minutes["summary"]
    assert summary.startswith("Maria, Dev, Priya, Tom and Kenji met for 30 minutes")
    assert "3 things" in summary and "5 action items" in summary
    asked = {s.n for s in meeting.lines if s.text.startswith("@AI")}
    cited = {n for kind in ("decisions", "action_items", "open_questions") for item in minutes[kind]
             for n in item["source_lines"]}
    assert cited and not cited & asked                   # questions put to the AI are not the meeting's content


def test_the_document_to_send_round():
    markdown = make_minutes(record_of(MEETINGS["zh_ops"]), now=2000.0).markdown()
    for heading in ("# 会议纪要", "## 摘要", "## 参会人", "## 决定", "## 待办事项", "## 待定问题"):
        assert heading in markdown
    assert "| 马超 | 排值班表 | 周五之前" in markdown and "记录第" in markdown


def test_the_spoken_form_is_at_most_three_sentences():
    for meeting in MEETINGS.values():
        spoken = make_minutes(record_of(meeting)).spoken()
        sentences = [s for s in re.split(r"(?<=[.!?])\s+|(?<=[。！？])", spoken) if s.strip()]
        assert 1 <= len(sentences) <= 3, spoken


def test_an_empty_meeting_says_so():
    record = MeetingRecord("r", "en", "ai-host", "AI", [], [Stay("ann", "Ann", 1.0)], [], 1.0, None)
    minutes = make_minutes(record, now=61.0)
    assert minutes.summary == "Nothing has been said in this meeting yet."
    assert minutes.spoken() == "So far nothing has been decided or assigned."


def test_kept_minutes_expire():
    now = [0.0]
    store = MinutesStore(ttl=10, clock=lambda: now[0])
    store.put(make_minutes(record_of(MEETINGS["en_standup"])))
    assert store.get("en_standup") is not None and len(store.all()) == 1
    now[0] = 11
    assert store.get("en_standup") is None and store.all() == []


def test_minutes_api_errors(client):
    status = client.get("/api/meeting/nope/minutes")
    assert status.status_code == 404 and status.get_json()["error"] == "room_not_found"
    client.post("/api/meeting/create", json={"user_id": "ann", "room_id": "m1", "host": False})
    bad = client.get("/api/meeting/m1/minutes?format=pdf")
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_request"
    empty = client.get("/api/meeting/m1/minutes").get_json()
    assert empty["summary"] == "Nothing has been said in this meeting yet." and empty["decisions"] == []
    markdown = client.get("/api/meeting/m1/minutes?format=markdown")
    assert markdown.status_code == 200 and markdown.mimetype == "text/markdown"
    assert client.get("/api/meeting/m1/summary").get_json()["summary"] == empty["summary"]
    assert client.get("/api/minutes").get_json() == {"success": True, "minutes": []}
