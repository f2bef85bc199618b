"""The AI host on scripted meetings, over real sockets with the embedded models: each meeting replayed into a
room (chat, and once as speech in Piper's voice through the microphone path), the host's answers to questions
about the meeting checked against the room's state, the minutes scored against the meeting's key; and minutes
that outlive their room."""
import re
import time
import uuid

import pytest

from tests.meetings import load_all, replay

MEETINGS = {m.id: m for m in load_all()}
SCALE = 1 / 45


@pytest.fixture(scope="module")
def host_server(live_server_factory):
    return live_server_factory({"HOST_ENABLED": 1})


@pytest.mark.parametrize("meeting_id", ["en_hiring", "zh_marketing"])
def test_a_replayed_meeting_gets_true_answers_and_minutes(host_server, meeting_id):
    meeting = MEETINGS[meeting_id]
    done = replay(host_server, meeting, f"live-{meeting_id}-{uuid.uuid4().hex[:4]}", scale=SCALE)
    about_meeting = [a for a in done.asked if a.expect["kind"] != "general"]     # general ones: the small model's
    wrong = [(a.question, a.answer, a.why) for a in about_meeting if not a.ok]
    assert len(about_meeting) >= 8 and len(wrong) <= 0.1 * len(about_meeting), wrong
    score = done.score().as_json()
    assert score["invented_items"] == 0, score["invented"]
    assert score["decision_recall"] >= 0.8 and score["action_item_recall"] >= 0.8, score
    summarize = next(s.n for s in meeting.lines if re.match(r"@AI (?:summarize|总结一下)$", s.text))
    spoken = done.answers[summarize]
    assert spoken and 1 <= len([s for s in re.split(r"(?<=[.!?])\s+|(?<=[。！？])", spoken) if s.strip()]) <= 3
    assert any(k in spoken for d in meeting.key["decisions"] for k in d["keywords"]), spoken
    heading = "## 决定" if meeting.language == "zh" else "## Decisions"
    assert heading in done.markdown and done.minutes["decisions"][0]["text"] in done.markdown
    kept = wait_for_kept(host_server, done.room_id)            # everyone left: the minutes are kept and listed
    assert kept["decisions"] == len(done.minutes["decisions"])


def wait_for_kept(server, room_id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = [m for m in server.api("GET", "/api/minutes")[1]["minutes"] if m["room_id"] == room_id]
        if listed:
            return listed[0]
        time.sleep(0.1)
    raise AssertionError(f"the minutes of {room_id} were not kept")


def test_a_spoken_meeting_is_heard_and_minuted(host_server):
    """en_standup said line by line in Piper's voice: Opus → VAD → Whisper tiny.en → transcript → minutes."""
    import numpy as np
    import soxr

    from pipeline.tts_piper import load_piper
    from tests.hostutil import send_microphone
    piper = load_piper(cache_dir="~/.cache/avatar-meeting")

    def speak(seat, text):
        pcm, rate, _ = piper.synthesize(text)
        pad = np.zeros(int(48000 * 0.4), np.float32)
        send_microphone(seat.client, np.concatenate([pad, soxr.resample(pcm.astype(np.float32), rate, 48000), pad]))

    meeting = MEETINGS["en_standup"]
    done = replay(host_server, meeting, f"spoken-{uuid.uuid4().hex[:6]}", scale=SCALE, speak=speak)
    voice = [n for n, text in done.transcript.items() if n in done.line_of.values()]
    assert len(voice) >= 0.8 * len([s for s in meeting.lines if not s.text.startswith("@AI")]), done.transcript
    score = done.score().as_json()
    assert score["invented_items"] == 0, score["invented"]
    assert score["found"]["decisions"] >= 1 and score["found"]["action_items"] >= 2, score


def test_minutes_outlive_their_room(live_server_factory):
    """A room without a host keeps its chat; when it empties its minutes are kept, and still served once the
    room has closed."""
    from tests.wsclient import MeetingClient
    from wire import protocol as p
    server = live_server_factory({"EMPTY_ROOM_TTL": 0.5})
    room_id = f"short-{uuid.uuid4().hex[:6]}"
    assert server.api("POST", "/api/meeting/create", {"user_id": "ann", "room_id": room_id, "host": False})[0] == 201
    ann, bob = MeetingClient(server, room_id, "ann", display_name="Ann"), MeetingClient(server, room_id, "bob",
                                                                                         display_name="Bob")
    ann.send(p.Chat("How about we move the demo to Thursday?"))
    bob.expect(p.Chat)
    bob.send(p.Chat("Works for me. I'll update the invite by Friday."))
    ann.expect(p.Chat)
    for client in (ann, bob):
        server.api("POST", "/api/meeting/leave", {"room_id": room_id, "user_id": client.user_id,
                                                  "token": client.token})
    kept = wait_for_kept(server, room_id)
    assert kept["decisions"] == 1 and kept["action_items"] == 1
    deadline = time.monotonic() + 10
    while server.api("GET", f"/api/meeting/{room_id}")[0] != 404:      # listing rooms closes the stale ones
        server.api("GET", "/api/meeting")
        assert time.monotonic() < deadline, "the empty room did not close"
        time.sleep(0.2)
    status, minutes = server.api("GET", f"/api/meeting/{room_id}/minutes")
    assert status == 200 and minutes["decisions"][0]["text"] == "Move the demo to Thursday"
    assert minutes["action_items"][0]["owner"] == "Bob" and minutes["action_items"][0]["due"] == "Friday"
    assert minutes["started_at"] <= minutes["ended_at"] <= minutes["generated_at"]
    assert minutes["duration_s"] == round(minutes["ended_at"] - minutes["started_at"], 1)
