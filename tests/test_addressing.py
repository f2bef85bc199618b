"""When the host is addressed, and what it is asked: chat and speech as Whisper writes it."""
import pytest

from pipeline.addressing import Addressing, Request


@pytest.mark.parametrize("text, source, request_", [
    ("@AI what is on the agenda?", "chat", Request("what is on the agenda?", "ask")),
    ("thanks @ai, summarize please", "chat", Request("thanks summarize please", "summary")),
    ("AI, what is the capital of France?", "voice", Request("what is the capital of France?", "ask")),
    ("A.I. what time is it?", "voice", Request("what time is it?", "ask")),
    ("Hey AI, recap the meeting.", "voice", Request("recap the meeting.", "summary")),
    ("Hey, I, what time it all says move?", "voice", Request("what time it all says move?", "ask")),  # tiny.en's "AI,"
    ("Hey I, what is next?", "voice", Request("what is next?", "ask")),
    ("人工智能，下一项是什么？", "voice", Request("下一项是什么？", "ask")),
    ("AI 总结一下", "voice", Request("总结一下", "summary")),
])
def test_addressed(text, source, request_):
    assert Addressing("AI").match(text, source) == request_


@pytest.mark.parametrize("text, source", [
    ("Hey, I think we should ship on Friday.", "voice"),
    ("Hi, I am Bob.", "voice"),
    ("aiming for Friday", "chat"),
    ("We talked about AI, a lot.", "voice"),
    ("email the team", "chat"),
    ("I said hi", "voice"),
])
def test_not_addressed(text, source):
    assert Addressing("AI").match(text, source) is None


def test_a_named_host_is_not_called_by_hey_i():
    ava = Addressing("Ava")
    assert ava.match("Ava, what is next?", "voice") == Request("what is next?", "ask")
    assert ava.match("Hey, I, what is next?", "voice") is None
