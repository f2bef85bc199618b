"""The AI host with the real models over real sockets: it hears, answers when addressed, keeps the agenda,
summarises, stops when talked over, and survives a dead LLM."""
import itertools
import threading
import time
import uuid

import pytest

from tests.hostutil import HostWatch, send_microphone, spoken, until_end
from tests.test_monitor import scrape_server, value
from tests.wsclient import MeetingClient
from wire import protocol as p

LOAD_TIMEOUT = 180            # the first room of a process loads every model
_n = itertools.count()


@pytest.fixture(scope="module")
def host_server(live_server_factory):
    return live_server_factory({"HOST_ENABLED": 1})


def open_room(server, **create) -> tuple[str, MeetingClient, HostWatch]:
    room_id = f"host-{next(_n)}-{uuid.uuid4().hex[:6]}"
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id, **create})
    assert status == 201, body
    client = MeetingClient(server, room_id)
    watch = HostWatch(body["host"]["slot"])
    watch.listen(client, LOAD_TIMEOUT, until=lambda w, m: isinstance(m, p.HostStatus) and m.state == "listening")
    assert watch.statuses and watch.statuses[-1].state == "listening", watch.statuses
    return room_id, client, watch



def test_a_spoken_question_is_heard_and_answered_with_voice_and_mouth(host_server):
    room_id, alice, first = open_room(host_server, agenda=[{"title": "Budget review", "minutes": 30}])
    bob = MeetingClient(host_server, room_id)
    watch = HostWatch(first.host_slot)
    watch.listen(bob, 30, until=until_end)                 # the agenda's first announcement
    watch.audio.clear()
    watch.mouth.clear()
    send_microphone(alice, spoken("AI, what is on the agenda?"))
    watch.listen(bob, 60, until=until_end)
    lines = host_server.api("GET", f"/api/meeting/{room_id}/transcript")[1]["lines"]
    heard = [ln["text"].lower() for ln in lines if ln["speaker"] == alice.user_id]
    assert heard and "agenda" in heard[-1] and lines[-1]["source"] == "voice", lines
    assert len(watch.audio) > 25, "the answer reached Bob as audio"
    assert watch.ends and watch.ends[-1].reason == p.AudioEnd.FINISHED
    assert any("Budget review" in text for text in watch.chats), watch.chats
    loud = max(r for _, r in watch.audio) * 0.3
    assert watch.mouth_when(loud=True, threshold=loud) > watch.mouth_when(loud=False, threshold=loud) + 0.1
    turns = host_server.api("GET", f"/api/meeting/{room_id}/host")[1]["turns"]
    assert turns[-1]["source"] == "voice" and None not in (turns[-1]["end_detected_ms"], turns[-1]["asr_done_ms"])
    figures = scrape_server(host_server)                   # the turn reached the monitoring too, stage by stage
    assert value(figures, "avatar_host_answers_total", outcome="answered") >= 1
    for stage in ("vad_end", "asr", "send"):           # (an exact answer: no LLM stage)
        assert value(figures, "avatar_host_stage_seconds_count", stage=stage) >= 1, stage
    assert value(figures, "avatar_host_first_audio_seconds_count", source="voice") >= 1


def test_agenda_announcements_and_warnings_arrive_in_order(host_server):
    agenda = [{"title": "Roadmap", "minutes": 0.15}, {"title": "Hiring", "minutes": 0.15}]
    _, alice, watch = open_room(host_server, agenda=agenda)
    watch.listen(alice, 40, until=lambda w, m: isinstance(m, p.Chat) and "last agenda item" in m.text)
    said = [t for t in watch.chats if "Roadmap" in t or "Hiring" in t or "last agenda" in t]
    assert len(said) == 5, said
    assert "item 1 of 2: Roadmap" in said[0] and "left for Roadmap" in said[1]
    assert "item 2 of 2: Hiring" in said[2] and "left for Hiring" in said[3] and "last agenda item" in said[4]
    assert len(watch.audio) > 20, "the announcements are spoken too"


def test_summarize_speaks_the_minutes_short_form(host_server):
    room_id, alice, watch = open_room(host_server)
    bob = MeetingClient(host_server, room_id)
    script = [(alice, "How about we double the marketing budget for the spring launch?"),
              (bob, "Agreed, let's do it."),
              (bob, "I'll draft the new budget by Friday."),
              (alice, "@AI how many people are in this meeting?")]
    for client, text in script[:3]:                      # in this order: each line reaches the other first
        client.send(p.Chat(text))
        (bob if client is alice else alice).expect(p.Chat, where=lambda m, text=text: m.text == text)
    alice.send(p.Chat(script[3][1]))
    watch.listen(alice, 30, until=lambda w, m: isinstance(m, p.Chat) and m.slot == w.host_slot)
    assert watch.chats[-1] == f"There are 2 people here: {alice.user_id} and {bob.user_id}, plus me, the AI host."
    alice.send(p.Chat("@AI summarize"))
    watch.listen(alice, 60, until=lambda w, m: isinstance(m, p.Chat) and m.slot == w.host_slot and "decided" in m.text)
    assert watch.chats[-1] == (f"We decided: double the marketing budget for the spring launch. "
                               f"There is 1 action item, for {bob.user_id}.")
    minutes = host_server.api("GET", f"/api/meeting/{room_id}/minutes")[1]
    assert minutes["decisions"] == [{"text": "Double the marketing budget for the spring launch",
                                     "source_lines": [1, 2]}]
    assert [(a["owner_id"], a["task"], a["due"], a["source_lines"]) for a in minutes["action_items"]] == [
        (bob.user_id, "Draft the new budget", "Friday", [3])]
    summary = host_server.api("GET", f"/api/meeting/{room_id}/summary")[1]["summary"]
    assert summary == minutes["summary"] and "double the marketing budget" in summary
    watch.listen(alice, 60, until=until_end)
    assert len(watch.audio) > 25, "the short form was spoken"


def test_the_host_answers_only_when_addressed(host_server):
    _, alice, watch = open_room(host_server)
    alice.send(p.Chat("I think the AI demo went well, what do you all think?"))
    watch.listen(alice, 4)
    assert not watch.audio and not watch.chats


def test_barge_in_stops_the_host(host_server):
    room_id, alice, first = open_room(host_server, agenda=[{"title": "Quarterly numbers and the long plan", "minutes": 30}])
    bob = MeetingClient(host_server, room_id)
    watch = HostWatch(first.host_slot)
    watch.listen(bob, 30, until=until_end)
    alice.send(p.Chat("@AI what is on the agenda? Please read it slowly."))
    watch.listen(bob, 30, until=lambda w, m: isinstance(m, p.Audio))   # the host is speaking
    speech = spoken("Sorry, let me interrupt you there.")
    onset = time.monotonic() + 0.5                                     # after the leading silence
    mic = threading.Thread(target=send_microphone, args=(alice, speech))
    mic.start()                                                        # Bob listens while Alice talks
    watch.listen(bob, 10, until=lambda w, m: isinstance(m, p.AudioStop))
    mic.join()
    assert watch.ends and watch.ends[-1].reason == p.AudioEnd.INTERRUPTED
    stopped = max(t for t, _ in watch.audio)
    assert stopped - onset < 1.0, f"audio kept coming {stopped - onset:.2f} s after the interruption"
    count = len(watch.audio)
    watch.listen(bob, 2)
    assert len(watch.audio) == count, "nothing queued was played after the barge-in"


def test_an_unreachable_llm_gives_a_clear_message_and_the_room_goes_on(live_server_factory):
    server = live_server_factory({"HOST_ENABLED": 1, "LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_TIMEOUT": 5})
    room_id, alice, watch = open_room(server)
    bob = MeetingClient(server, room_id)
    for attempt in range(2):
        alice.send(p.Chat(f"@AI hello number {attempt}"))
        watch.listen(alice, 20, until=lambda w, m: isinstance(m, p.Chat) and m.slot == w.host_slot)
        assert "language model is unreachable" in watch.chats[-1], watch.chats
    assert any(s.state == "error" for s in watch.statuses)
    alice.send(p.Chat("@AI what is on the agenda?"))                  # what needs no LLM still works
    watch.listen(alice, 30, until=lambda w, m: isinstance(m, p.Chat) and "agenda" in m.text)
    bob.drain(0.3)
    alice.send(p.Chat("the room goes on"))
    assert bob.expect(p.Chat, where=lambda m: m.text == "the room goes on")


def test_a_chinese_room_speaks_through_espeak(host_server):
    _, alice, watch = open_room(host_server, language="zh", agenda=[{"title": "预算", "minutes": 30}])
    watch.listen(alice, 30, until=until_end)                           # 第1项议程：预算 …
    assert any("预算" in t for t in watch.chats), watch.chats
    assert len(watch.audio) > 10 and max(r for _, r in watch.audio) > 0.01
