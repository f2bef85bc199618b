"""The Python client (avatar_client) and the bots' base class (integrations): reading the wire, errors and the
base class's bookkeeping without a server (fast), then both clients and the terminal bot against a real server
under gunicorn (slow)."""
from __future__ import annotations

import asyncio
import http.server
import json
import pathlib
import re
import subprocess
import sys
import threading

import pytest

from avatar_client import (
    AsyncAvatarClient,
    AvatarClient,
    AvatarError,
    Complete,
    Error,
    Interrupted,
    SessionInfo,
    TextChunk,
    Transcript,
    VideoChunk,
)
from avatar_client.calls import audio_payload, turn_message, ws_url
from avatar_client.protocol import SSEParser, Streams, chat_delta
from integrations.base import AvatarIntegration
from tests.conftest import ROOT, free_port
from tests.speech_util import espeak
from tests.test_say import plays
from tests.test_sessions import GUIDE, wav_bytes

MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(100)


def meta(text: str, size: int) -> str:
    return json.dumps({"type": "video_chunk_meta", "data": {"text": text, "size": size, "duration": 0.64}})


# --- the wire without a server (fast) -----------------------------------------------------------------------

def test_a_turns_messages_become_typed_events_and_its_last_ends_it():
    turn = Streams().begin("s", 10)
    assert turn.hello('{"type": "session", "data": {"session_id": "s", "created": false}}') is False
    messages = ['{"type": "transcript", "data": {"text": "Hi there"}}', '{"type": "text_chunk", "data": {"chunk": "Hel"}}',
                '{"type": "pong"}', '{"type": "text_chunk", "data": {"chunk": "lo."}}', meta("Hello.", len(MP4)), MP4,
                '{"type": "something_new", "data": {}}',
                '{"type": "stream_complete", "data": {"full_text": "Hello.", "video_url": "/v", "audio_url": "/a"}}']
    events = [event for m in messages if (event := turn.feed(m)) is not None]
    assert events == [Transcript("Hi there"), TextChunk("Hel"), TextChunk("lo."), VideoChunk("Hello.", MP4, 0.64),
                      Complete("Hello.", "/a", "/v")]
    assert events[3].mp4 == MP4 and turn.done


@pytest.mark.parametrize("messages,reason", [
    ([MP4], "without a video_chunk_meta"), ([meta("Hi.", 5), MP4], "said 5 bytes"),
    ([meta("Hi.", len(MP4)), '{"type": "text_chunk", "data": {"chunk": "x"}}'], f"expected the {len(MP4)} bytes"),
    (["<html>"], "not a JSON object"), (["[1, 2]"], "not a JSON object")])
def test_a_stream_that_breaks_the_protocol_is_refused(messages, reason):
    turn = Streams().begin("s", 10)
    with pytest.raises(AvatarError) as refused:
        for message in messages:
            turn.feed(message)
    assert refused.value.code == "bad_stream" and reason in refused.value.message


@pytest.mark.parametrize("message,event", [('{"type": "interrupted"}', Interrupted()),
                                           ('{"type": "error", "data": {"error": "no_speech", "message": "silence"}}',
                                            Error("no_speech", "silence"))])
def test_interrupted_and_error_end_the_turn(message, event):
    turn = Streams().begin("s", 10)
    assert turn.feed(message) == event and turn.done


def test_a_close_is_an_error_unless_a_newer_stream_of_ours_took_the_session():
    streams = Streams()
    old = streams.begin("s", 10)
    with pytest.raises(AvatarError) as taken:
        old.closed(4410, "another connection took this session")
    assert (taken.value.status, taken.value.code) == (4410, "session_taken")
    streams.begin("s", 10)                                     # our own newer stream
    assert old.closed(4410, "") == Interrupted() and old.done
    for code, name in [(4404, "session_deleted"), (4408, "session_expired"), (4409, "session_evicted"),
                       (1012, "server_restarting"), (4999, "closed_4999"), (None, "connection_lost")]:
        with pytest.raises(AvatarError) as closed:
            streams.begin("t", 10).closed(code, "why")
        assert (closed.value.status, closed.value.code) == (code, name)


def test_after_an_interrupt_silence_ends_the_turn_and_before_it_is_a_timeout():
    turn = Streams().begin("s", 30)
    with pytest.raises(AvatarError) as silent:
        turn.timed_out()
    assert silent.value.code == "timeout" and silent.value.status is None
    turn.interrupted = True
    assert turn.wait < 30 and turn.timed_out() == Interrupted() and turn.done


@pytest.mark.parametrize("status,body,code,message", [
    (404, b'{"success": false, "error": "session_not_found", "message": "no session \'x\'"}', "session_not_found",
     "no session 'x'"),
    (400, b'{"error": "bad_request", "message": "text must not be empty"}', "bad_request", "text must not be empty"),
    (502, b"<html><body>Bad Gateway</body></html>", "http_502", "<html><body>Bad Gateway</body></html>"),
    (503, b"", "http_503", "Service Unavailable"), (599, b"", "http_599", "HTTP error")])
def test_error_answers_become_one_exception(status, body, code, message):
    error = AvatarError.from_response(status, body)
    assert (error.status, error.code, error.message) == (status, code, message) and code in str(error)


def test_chat_events_are_read_from_server_sent_lines():
    text = ('data: {"delta": "The"}\n\n: a comment\ndata: {"delta": " capital"}\n\n'
            'event: done\ndata: {"response": "The capital", "model": "m"}\n\n')
    parser = SSEParser()
    events = [e for line in text.splitlines(keepends=True) if (e := parser.feed(line)) is not None]
    assert events == [("message", {"delta": "The"}), ("message", {"delta": " capital"}),
                      ("done", {"response": "The capital", "model": "m"})]
    assert [chat_delta(*e) for e in events] == ["The", " capital", None]
    with pytest.raises(AvatarError) as failed:
        chat_delta("error", {"error": "llm_unavailable", "message": "unreachable"})
    assert failed.value.code == "llm_unavailable"


def test_audio_is_sent_as_base64_with_its_format(tmp_path):
    (tmp_path / "q.MP3").write_bytes(b"ID3abc")
    assert audio_payload(b"RIFF") == ("UklGRg==", "wav")
    assert audio_payload(tmp_path / "q.MP3") == ("SUQzYWJj", "mp3")
    assert audio_payload(str(tmp_path / "q.MP3"), "ogg")[1] == "ogg"
    with pytest.raises(ValueError, match="format must be one of"):
        audio_payload(b"x", "flac")
    assert turn_message("Hi", None, None, False) == {"type": "text", "text": "Hi", "streaming": False}
    assert turn_message(None, b"RIFF", None, True) == {"type": "audio", "data": "UklGRg==", "format": "wav"}
    for text, audio in [(None, None), ("Hi", b"RIFF")]:
        with pytest.raises(ValueError, match="one of the two"):
            AvatarClient("http://x").stream("s", text, audio=audio)
    assert ws_url("https://a.example/", "s 1") == "wss://a.example/ws/s%201"
    assert ws_url("http://127.0.0.1:8000", "abc") == "ws://127.0.0.1:8000/ws/abc"


class Canned(http.server.BaseHTTPRequestHandler):
    """A stand-in server: answers from ANSWERS by path, and records the headers it was sent."""
    ANSWERS = {"/api/chat/models": (502, "text/html", b"<h1>Bad Gateway</h1>"),
               "/api/chat/health": (503, "application/json", b'{"success": false, "reachable": false, '
                                                              b'"error": "llm_unavailable", "message": "down"}'),
               "/api/v1/sessions/s": (404, "application/json", b'{"error": "session_not_found", "message": "no s"}'),
               "/api/v1/sessions": (200, "text/html", b"<h1>Welcome to nginx!</h1>")}
    seen: list = []

    def do_GET(self):
        self.seen.append(dict(self.headers))
        status, kind, body = self.ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def canned():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_both_clients_map_http_failures_the_same_way(canned):
    async def go(client: AsyncAvatarClient):
        async with client:
            return [await outcome(call) for call in (client.models(), client.health(), client.get_session("s"),
                                                     client.list_sessions())]

    async def outcome(call):
        try:
            return await call
        except AvatarError as exc:
            return exc.status, exc.code, exc.message

    sync = AvatarClient(canned, api_key="k3y")
    results = []
    for call in (sync.models, sync.health, lambda: sync.get_session("s"), sync.list_sessions):
        try:
            results.append(call())
        except AvatarError as exc:
            results.append((exc.status, exc.code, exc.message))
    assert results == asyncio.run(go(AsyncAvatarClient(canned, api_key="k3y"))) == [
        (502, "http_502", "<h1>Bad Gateway</h1>"), {"success": False, "reachable": False, "error": "llm_unavailable",
                                                    "message": "down"}, (404, "session_not_found", "no s"),
        (200, "bad_answer", "GET /api/v1/sessions: the answer is not JSON: b'<h1>Welcome to nginx!</h1>'")]
    assert all(headers.get("Authorization") == "Bearer k3y" for headers in Canned.seen)

    async def send(client: AsyncAvatarClient):
        async with client:
            await client.send_text("s", "Hi")

    port = free_port()
    for call in (lambda: AvatarClient(f"http://127.0.0.1:{port}").models(),
                 lambda: list(AvatarClient(f"http://127.0.0.1:{port}").stream("s", "Hi")),
                 lambda: asyncio.run(send(AsyncAvatarClient(f"http://127.0.0.1:{port}")))):
        with pytest.raises(AvatarError) as unreachable:
            call()
        assert unreachable.value.code == "unreachable" and unreachable.value.status is None


class FakeClient:
    """AsyncAvatarClient's calls that AvatarIntegration makes, scripted: each stream yields `script`."""

    def __init__(self):
        self.made, self.deleted, self.streamed, self.closed = [], [], [], False
        self.script: list = [TextChunk("Hi "), VideoChunk("Hi there.", MP4, 1.0), TextChunk("there."),
                             Complete("Hi there.")]
        self.gone: set[str] = set()

    async def create_session(self, config=None):
        self.made.append(config)
        return SessionInfo(f"sess{len(self.made)}", "active", "", {}, [])

    async def stream(self, session_id, text):
        self.streamed.append((session_id, text))
        if session_id in self.gone:
            raise AvatarError(404, "session_not_found", "gone")
        for event in self.script:
            yield event

    async def delete_session(self, session_id):
        self.deleted.append(session_id)

    async def aclose(self):
        self.closed = True


class Recorder(AvatarIntegration):
    def __init__(self, **kwargs):
        super().__init__("http://unused", {"tts_voice": "en-US-GuyNeural"}, **kwargs)
        self.client, self.sent, self.chunks = FakeClient(), [], []

    async def send_to_platform(self, user_id, response):
        self.sent.append((user_id, response))

    async def on_text_chunk(self, user_id, chunk):
        self.chunks.append(chunk)

    async def run(self):
        for user, text in [("ann", "Hi"), ("bob", "Hello"), ("ann", "Again")]:
            await self.on_message(user, text)


def test_the_base_class_keeps_a_session_per_user_and_deletes_them_at_the_end(tmp_path):
    bot = Recorder(out_dir=tmp_path)
    asyncio.run(bot.serve())
    fake = bot.client
    assert fake.made == [{"tts_voice": "en-US-GuyNeural"}] * 2
    assert fake.streamed == [("sess1", "Hi"), ("sess2", "Hello"), ("sess1", "Again")]
    assert [(user, r.text, r.session_id) for user, r in bot.sent] == [
        ("ann", "Hi there.", "sess1"), ("bob", "Hi there.", "sess2"), ("ann", "Hi there.", "sess1")]
    assert bot.chunks == ["Hi ", "there."] * 3
    assert [p.name for p in bot.sent[2][1].paths] == ["ann-sess1-002-01.mp4"] and bot.sent[2][1].videos == [MP4]
    assert bot.sent[2][1].paths[0].read_bytes() == MP4
    assert sorted(fake.deleted) == ["sess1", "sess2"] and fake.closed and bot.sessions == {}


def test_an_ended_session_is_made_again_and_an_interrupted_reply_is_not_sent():
    bot = Recorder()
    asyncio.run(bot.on_message("ann", "Hi"))
    bot.client.gone.add("sess1")                              # idle or evicted on the server since
    response = asyncio.run(bot.on_message("ann", "Still there?"))
    assert response.session_id == "sess2" and bot.sessions == {"ann": "sess2"} and response.paths == []
    bot.client.script = [TextChunk("Once upon"), Interrupted()]
    response = asyncio.run(bot.on_message("ann", "Tell me a story"))
    assert response.interrupted and response.text == "Once upon" and len(bot.sent) == 2


# --- against a real server (slow) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(live_server_factory, tmp_path_factory):
    """Short replies keep the module quick."""
    return live_server_factory({"SESSION_DIR": tmp_path_factory.mktemp("client-sessions"), "LLM_MAX_TOKENS": 32})


@pytest.fixture(scope="module")
def client(server) -> AvatarClient:
    return AvatarClient(server.url, timeout=120)


def test_create_with_the_guides_config_says_what_was_replaced(client):
    info = client.create_session(GUIDE["config"])
    assert info.status == "active" and info.config["language"] == "zh" and info.created_at.endswith("Z")
    avatar, voice, model = info.warnings
    assert "'astronaut' is used" in avatar and "edge-tts voice" in voice and "'gpt-4o' is not available" in model
    assert client.get_session(info.session_id).config == info.config and client.create_session().warnings == []
    client.delete_session(info.session_id)


def test_text_is_answered_with_a_playable_mp4_and_a_wav(client, tmp_path):
    sid = client.create_session().session_id
    reply = client.send_text(sid, "Hello! Who are you?")
    assert reply.session_id == sid and reply.text.strip() and reply.video_url.endswith("/video/latest")
    (tmp_path / "reply.mp4").write_bytes(client.latest_video(sid))
    streams = plays(tmp_path / "reply.mp4")
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert client.latest_audio(sid)[:4] == b"RIFF"
    client.delete_session(sid)


def test_speech_is_transcribed_and_answered(client, tmp_path):
    sid = client.create_session().session_id
    (tmp_path / "question.wav").write_bytes(wav_bytes(espeak("What is the capital of France?")))
    reply = client.send_audio(sid, tmp_path / "question.wav")
    assert "capital" in reply.transcript.lower() and "france" in reply.transcript.lower() and reply.text.strip()
    client.delete_session(sid)


def test_a_stream_gives_text_then_an_mp4_per_sentence_then_complete(client, tmp_path):
    sid = client.create_session().session_id
    events = list(client.stream(sid, "Tell me two short facts about the Moon."))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TextChunk" and kinds[-1] == "Complete" and kinds.count("Complete") == 1, kinds
    assert "VideoChunk" in kinds and set(kinds) == {"TextChunk", "VideoChunk", "Complete"}
    assert events[-1].full_text == "".join(e.text for e in events if isinstance(e, TextChunk))
    videos = [e for e in events if isinstance(e, VideoChunk)]
    assert all(v.text and v.duration > 0 and v.mp4[4:8] == b"ftyp" for v in videos)
    (tmp_path / "first.mp4").write_bytes(videos[0].mp4)
    assert plays(tmp_path / "first.mp4")["video"]["codec_name"] == "h264"
    assert client.get_session(sid).config["language"] == "en"           # the same session, still there
    client.delete_session(sid)


def test_server_errors_become_avatar_errors_with_their_codes(client, server):
    sid = client.create_session().session_id
    refusals = [(lambda: client.send_text("nope", "Hi"), 404, "session_not_found"),
                (lambda: client.send_text(sid, ""), 400, "bad_request"),
                (lambda: client.latest_video(sid), 404, "no_reply_yet"),
                (lambda: client.send_audio(sid, b"plain text, not audio" * 20), 415, "not_audio"),
                (lambda: list(client.stream("never-made", "Hi")), 404, "session_not_found"),
                (lambda: list(client.stream("bad id!", "Hi", create=True)), 4400, "bad_session_id")]
    for call, status, code in refusals:
        with pytest.raises(AvatarError) as refused:
            call()
        assert (refused.value.status, refused.value.code) == (status, code) and refused.value.message, code
    assert server.api("GET", "/api/v1/sessions/never-made")[0] == 404       # made on connect, then deleted
    assert list(client.stream(sid, "   ")) == [Error("bad_request", "text must not be empty")]
    client.delete_session(sid)
    with pytest.raises(AvatarError) as gone:
        client.delete_session(sid)
    assert gone.value.code == "session_not_found"


def test_interrupt_ends_the_stream_with_interrupted(client):
    sid = client.create_session().session_id
    kinds = []
    for event in client.stream(sid, "Tell me a long story about a dragon and a knight."):
        kinds.append(type(event).__name__)
        if len(kinds) == 1:
            assert client.interrupt(sid)
    assert kinds[0] == "TextChunk" and kinds[-1] == "Interrupted" and "Complete" not in kinds
    assert not client.interrupt(sid)                                        # nothing streaming now
    assert [type(e) for e in client.stream(sid, "Say hello.")][-1] is Complete
    client.delete_session(sid)


def test_the_async_client_streams_and_a_newer_stream_interrupts_the_older(server):
    async def go():
        async with AsyncAvatarClient(server.url) as client:
            sid = (await client.create_session()).session_id
            first, started = [], asyncio.Event()

            async def story():
                async for event in client.stream(sid, "Tell me a long story about a lighthouse."):
                    first.append(event)
                    started.set()
            task = asyncio.create_task(story())
            await asyncio.wait_for(started.wait(), 60)
            second = [event async for event in client.stream(sid, "Say hello.")]
            await task
            deltas = [delta async for delta in client.chat_stream("Hello! Who are you?")]
            chat, health, models = await client.chat("Hi"), await client.health(), await client.models()
            await client.delete_session(sid)
            return first, second, deltas, chat, health, models

    first, second, deltas, chat, health, models = asyncio.run(go())
    assert isinstance(first[-1], Interrupted) and not any(isinstance(e, Complete) for e in first)
    assert isinstance(second[-1], Complete) and second[-1].full_text.strip()
    assert len(deltas) > 1 and "".join(deltas).strip()
    assert chat.response.strip() and chat.model == models["model"] and health["reachable"] is True


def test_the_terminal_bot_answers_each_line_and_saves_its_videos(server, tmp_path):
    out = tmp_path / "replies"
    done = subprocess.run([sys.executable, "-m", "integrations.terminal_bot", "--server", server.url, "--out", str(out)],
                          input=f"Hello!\n\n{'x' * 2001}\nWhat is the Moon?\n", capture_output=True, text=True,
                          cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "error: bad_request: text has 2001 characters" in done.stderr           # said, and the bot goes on
    replies = re.findall(r"^avatar> (.+)$", done.stdout, re.M)
    assert len(replies) == 2 and all(r.strip() for r in replies), done.stdout
    paths = [pathlib.Path(p) for p in re.findall(r"^video: (.+)$", done.stdout, re.M)]
    assert paths and sorted(paths) == sorted(out.glob("*.mp4")) and all(p.stat().st_size > 1000 for p in paths)
    assert {p.name.split("-")[2] for p in paths} == {"001", "003"}                 # (the 2nd was refused)
    assert plays(paths[-1])["audio"]["codec_name"] == "aac"
    session_id = re.search(r"^session (\S+)$", done.stderr, re.M).group(1)
    assert server.api("GET", f"/api/v1/sessions/{session_id}")[0] == 404    # deleted at the end of input
