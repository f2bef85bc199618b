"""One-to-one avatar sessions (docs/SESSIONS.md): the pieces without models (fast), then the real thing under
gunicorn (slow): the embedded LLM, Piper, Whisper tiny.en, the renderer and ffmpeg, over HTTP and a WebSocket."""
from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import config
from connect.sessions import parse_audio
from meeting.errors import InvalidRequest
from pipeline.frames import Sentence, SpeechAudio
from pipeline.sessions import PAD, RATE, AudioTooLarge, NotAudio, TextChunk, _Chunks, decode_audio, whole_frames
from pipeline.speech import _NamePrefix
from tests.speech_util import espeak, silence
from tests.test_say import plays, top_level_boxes

SETTINGS = config.load(config.TESTING)
GUIDE = {"config": {"avatar_template": "templates/female_01.jpg", "llm_model": "gpt-4o",
                    "tts_voice": "zh-CN-XiaoxiaoNeural"}}


def wav_bytes(pcm: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, pcm, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


# --- without models (fast) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [0.01, 0.5, 1.0, 2.345])
def test_a_sentence_is_padded_to_whole_video_and_aac_frames(seconds):
    audio = SpeechAudio(np.full(int(seconds * 22050), 0.25, np.float32), 22050, Sentence("Hi.", 0))
    pcm = whole_frames(audio)
    assert PAD == 5120 and PAD % (RATE // 25) == 0 and PAD % 1024 == 0
    assert pcm.dtype == np.int16 and len(pcm) % PAD == 0 and 0 <= len(pcm) - seconds * RATE < PAD + 32
    assert abs(int(pcm[len(pcm) // 2 if seconds > 0.1 else 0])) > 7000 and pcm[-1] == 0


def test_text_chunks_joined_are_the_reply_without_a_name_prefix_or_outer_spaces():
    sent, names = [], _NamePrefix()           # as HostSpeech.answer hands the text to its on_text
    chunks = _Chunks(sent.append)
    for delta in ["  AI", ": Hello", " there.", " How", " are you?\n", " "]:
        chunks.feed(names.feed(delta))
    chunks.feed(names.flush())
    text = chunks.text()
    assert text == "Hello there. How are you?" == "".join(c.text for c in sent)
    assert all(isinstance(c, TextChunk) and c.text for c in sent) and len(sent) >= 3


def test_audio_files_are_decoded_to_16khz_and_other_bytes_refused():
    pcm = espeak("Hello there")
    for fmt in ("wav", "ogg", "mp3"):
        data = wav_bytes(pcm) if fmt == "wav" else subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "wav", "-i", "-", "-f", fmt, "-"], input=wav_bytes(pcm),
            capture_output=True, check=True).stdout
        out = decode_audio(data, 60)
        assert out.dtype == np.float32 and abs(len(out) - len(pcm)) < 0.1 * 16000, fmt
    with pytest.raises(NotAudio):
        decode_audio(b"this is not audio at all" * 40, 60)
    with pytest.raises(NotAudio):
        decode_audio(b"", 60)
    with pytest.raises(AudioTooLarge):
        decode_audio(wav_bytes(silence(3.0)), 2)


@pytest.mark.parametrize("data,fmt,reason", [
    (None, "wav", "audio_data is required"), ("", "wav", "audio_data is required"), (5, "wav", "audio_data is required"),
    ("@@not base64@@", "wav", "not valid base64"), ("QUJD", "flac", "format must be one of"),
    ("QUJD", 3, "format must be one of")])
def test_bad_audio_fields_are_refused(data, fmt, reason):
    with pytest.raises(InvalidRequest) as refused:
        parse_audio(data, fmt, SETTINGS)
    assert reason in refused.value.message


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/sessions/nope/text"), ("POST", "/api/v1/sessions/nope/audio"), ("DELETE", "/api/v1/sessions/nope"),
    ("GET", "/api/v1/sessions/nope"), ("GET", "/api/v1/sessions/nope/audio/latest"),
    ("GET", "/api/v1/sessions/nope/video/latest")])
def test_an_unknown_session_is_a_404_json(client, method, path):
    r = client.open(path, method=method, json={"text": "hi"})
    assert r.status_code == 404 and r.json == {"success": False, "error": "session_not_found",
                                               "message": "no session 'nope' (it ended, or never existed)"}


@pytest.mark.parametrize("body,reason", [
    ("{broken", "JSON object"), ("[1, 2]", "JSON object"), ('{"config": 3}', "config must be an object"),
    ('{"config": {"avatar_template": 5}}', "avatar_template must be a string"),
    ('{"config": {"tts_voice": ["x"]}}', "tts_voice must be a string")])
def test_a_bad_create_body_is_a_400_before_anything_is_made(client, body, reason):
    r = client.post("/api/v1/sessions", data=body, content_type="application/json")
    assert r.status_code == 400 and r.json["error"] == "bad_request" and reason in r.json["message"]
    assert client.application.extensions["sessions"].sessions() == []


# --- the real thing under gunicorn (slow) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(live_server_factory, tmp_path_factory):
    """Short replies keep the module quick; audio over 1 MB is refused (so a test can send more)."""
    return live_server_factory({"SESSION_DIR": tmp_path_factory.mktemp("sessions"), "LLM_MAX_TOKENS": 48,
                                "SESSION_MAX_AUDIO_MB": 1})


def get(server, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


def create(server, body: dict | None = None) -> str:
    status, answer = server.api("POST", "/api/v1/sessions", body)
    assert status == 201 and answer["status"] == "active", answer
    return answer["session_id"]


def test_a_session_is_created_without_a_body(server):
    req = urllib.request.Request(server.url + "/api/v1/sessions", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert resp.status == 201 and answer["status"] == "active" and answer["warnings"] == []
    assert len(answer["session_id"]) == 36 and answer["created_at"].endswith("Z")
    assert answer["config"]["avatar_template"] == "astronaut" and answer["config"]["language"] == "en"


def test_the_guides_create_is_active_with_what_was_substituted(server):
    status, answer = server.api("POST", "/api/v1/sessions", GUIDE)
    assert status == 201 and answer["status"] == "active"
    avatar, voice, model = answer["warnings"]
    assert "'templates/female_01.jpg' is not a stored avatar" in avatar and "'astronaut' is used" in avatar
    assert "'zh-CN-XiaoxiaoNeural' is an edge-tts voice, which needs the network" in voice
    assert "Chinese voice espeak-ng cmn-latn-pinyin is used" in voice and "'gpt-4o' is not available" in model
    assert answer["config"]["language"] == "zh"


def test_text_is_answered_with_a_wav_and_a_fast_start_mp4(server, tmp_path):
    sid = create(server)
    status, answer = server.api("POST", f"/api/v1/sessions/{sid}/text", {"text": "Hello! Who are you?",
                                                                         "streaming": False}, timeout=120)
    assert status == 200 and answer["text"].strip() and answer["session_id"] == sid, answer
    status, wav, kind = get(server, answer["audio_url"])
    assert status == 200 and kind == "audio/wav" and wav[:4] == b"RIFF"
    pcm, rate = soundfile.read(io.BytesIO(wav))
    assert rate == RATE and len(pcm) > RATE // 2 and np.abs(pcm).max() > 0.05
    status, mp4, kind = get(server, answer["video_url"])
    assert status == 200 and kind == "video/mp4"
    (tmp_path / "reply.mp4").write_bytes(mp4)
    streams = plays(tmp_path / "reply.mp4")
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (streams["video"]["width"], streams["video"]["height"]) == (512, 512)
    assert abs(float(streams["video"]["duration"]) - len(pcm) / rate) < 0.05
    boxes = top_level_boxes(tmp_path / "reply.mp4")
    assert boxes.index("moov") < boxes.index("mdat")
    assert len(mp4) / (len(pcm) / rate) < 100_000


def test_a_spoken_question_is_transcribed_and_answered(server):
    sid = create(server)
    audio = base64.b64encode(wav_bytes(espeak("What is the capital of France?"))).decode()
    status, answer = server.api("POST", f"/api/v1/sessions/{sid}/audio", {"audio_data": audio, "format": "wav"},
                                timeout=120)
    assert status == 200, answer
    assert "capital" in answer["transcript"].lower() and "france" in answer["transcript"].lower()
    assert answer["text"].strip() and answer["video_url"].endswith("/video/latest")


class Socket:
    """A session's WebSocket: JSON messages as dicts, binary ones as bytes."""

    def __init__(self, server, session_id: str):
        self.ws = connect(f"{server.ws_url}/ws/{session_id}", compression=None, max_size=None, open_timeout=30,
                          ping_interval=None, max_queue=None).__enter__()

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float = 120) -> dict | bytes:
        data = self.ws.recv(timeout)
        return data if isinstance(data, bytes) else json.loads(data)

    def until(self, kind: str, timeout: float = 120) -> list:
        """Everything up to and including the first message of `kind`."""
        got = []
        while not (got and isinstance(got[-1], dict) and got[-1]["type"] == kind):
            got.append(self.recv(timeout))
        return got

    def close(self) -> None:
        self.ws.close()


def media_seconds(path: pathlib.Path) -> tuple[float, float, int]:
    """(video seconds, audio seconds, decoded audio samples) of an MP4."""
    streams = plays(path)
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout
    return float(streams["video"]["duration"]), float(streams["audio"]["duration"]), len(pcm) // 2


def test_the_websocket_streams_text_then_a_playable_mp4_per_sentence(server, tmp_path):
    sid = f"ws-{uuid.uuid4().hex[:8]}"
    assert server.api("GET", f"/api/v1/sessions/{sid}")[0] == 404
    ws = Socket(server, sid)
    hello = ws.recv()
    assert hello["type"] == "session" and hello["data"]["created"] is True and hello["data"]["session_id"] == sid
    assert server.api("GET", f"/api/v1/sessions/{sid}")[0] == 200          # made on connect
    t0 = time.monotonic()
    ws.send({"type": "text", "text": "Tell me two short facts about the Moon.", "streaming": True})
    got, first_video = [], None
    while not (got and isinstance(got[-1], dict) and got[-1]["type"] == "stream_complete"):
        got.append(ws.recv())
        if first_video is None and isinstance(got[-1], dict) and got[-1]["type"] == "video_chunk_meta":
            first_video = time.monotonic() - t0
    ws.close()
    chunks = [m["data"]["chunk"] for m in got if isinstance(m, dict) and m["type"] == "text_chunk"]
    assert len(chunks) > 1 and got[-1]["data"]["full_text"] == "".join(chunks)
    assert got[-1]["data"]["video_url"] == f"/api/v1/sessions/{sid}/video/latest"
    videos, total = [], 0.0
    for i, message in enumerate(got):
        if isinstance(message, bytes):
            meta = got[i - 1]
            assert meta["type"] == "video_chunk_meta" and meta["data"]["size"] == len(message) and meta["data"]["text"]
            path = tmp_path / f"{len(videos):02d}.mp4"
            path.write_bytes(message)
            video_s, audio_s, samples = media_seconds(path)
            assert abs(video_s - audio_s) < 1e-3 and samples == round(audio_s * RATE), (video_s, audio_s, samples)
            videos.append(path)
            total += audio_s
    assert videos and all(isinstance(got[i + 1], bytes) for i, m in enumerate(got)
                          if isinstance(m, dict) and m["type"] == "video_chunk_meta")
    inputs = [arg for p in videos for arg in ("-i", str(p))]            # played one after another, as decoded
    joined = "".join(f"[{i}:a]" for i in range(len(videos))) + f"concat=n={len(videos)}:v=0:a=1"
    pcm = subprocess.run(["ffmpeg", "-v", "error", *inputs, "-filter_complex", joined, "-f", "s16le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout
    assert len(pcm) // 2 == round(total * RATE), (len(pcm) // 2, total)
    size = sum(p.stat().st_size for p in videos)
    print(f"first video_chunk_meta after {first_video:.2f} s; {len(videos)} chunks, {total:.2f} s of speech, "
          f"{size / total / 1000:.1f} KB per second")


def test_a_second_text_mid_stream_interrupts_the_first(server):
    ws = Socket(server, f"ws-{uuid.uuid4().hex[:8]}")
    assert ws.recv()["type"] == "session"
    ws.send({"type": "text", "text": "Tell me a long story about a dragon and a knight.", "streaming": True})
    assert ws.recv()["type"] == "text_chunk"
    ws.send({"type": "text", "text": "Say hello.", "streaming": True})
    got = ws.until("stream_complete")
    kinds = [m["type"] for m in got if isinstance(m, dict)]
    assert kinds.count("interrupted") == 1 and "stream_complete" == kinds[-1]
    after = got[[i for i, m in enumerate(got) if isinstance(m, dict) and m["type"] == "interrupted"][0] + 1:]
    chunks = [m["data"]["chunk"] for m in after if isinstance(m, dict) and m["type"] == "text_chunk"]
    assert got[-1]["data"]["full_text"] == "".join(chunks) and chunks
    ws.close()


def test_two_texts_sent_back_to_back_get_an_interrupted_and_then_the_second_reply(server):
    """However quickly the second comes (even before the first turn has begun), the first is answered with
    `interrupted`, never with silence."""
    ws = Socket(server, f"ws-{uuid.uuid4().hex[:8]}")
    assert ws.recv()["type"] == "session"
    for _ in range(3):
        ws.send({"type": "text", "text": "Tell me a long story about a dragon.", "streaming": True})
        ws.send({"type": "text", "text": "Say hello.", "streaming": True})
        kinds = [m["type"] for m in ws.until("stream_complete") if isinstance(m, dict)]
        assert kinds.count("interrupted") == 1 and kinds.count("stream_complete") == 1, kinds
    ws.close()


BAD_MESSAGES = [
    ("not json", "bad_json"), ("[1, 2]", "bad_message"), ('{"text": "hi"}', "bad_message"),
    ('{"type": "dance"}', "unknown_type"), ('{"type": "text"}', "bad_request"),
    ('{"type": "text", "text": "  "}', "bad_request"), ('{"type": "text", "text": "hi", "streaming": "yes"}', "bad_request"),
    (json.dumps({"type": "text", "text": "x" * (SETTINGS.SESSION_MAX_TEXT_CHARS + 1)}), "bad_request"),
    ('{"type": "audio", "data": "%%%"}', "bad_request"),
    (json.dumps({"type": "audio", "data": base64.b64encode(b"no sound here" * 50).decode()}), "not_audio"),
    (json.dumps({"type": "audio", "data": base64.b64encode(wav_bytes(silence(1.0))).decode()}), "no_speech"),
    (b"\x00\x01binary", "bad_message")]


def test_bad_messages_get_error_messages_and_the_socket_stays_open(server):
    ws = Socket(server, f"ws-{uuid.uuid4().hex[:8]}")
    assert ws.recv()["type"] == "session"
    for message, code in BAD_MESSAGES:
        ws.ws.send(message)
        answer = ws.until("error", 60)[-1]
        assert answer["data"]["error"] == code and answer["data"]["message"], (message[:40], answer)
    ws.send({"type": "ping"})
    assert ws.until("pong")[-1] == {"type": "pong"}
    ws.close()


def audio_body(pcm: np.ndarray) -> dict:
    return {"audio_data": base64.b64encode(wav_bytes(pcm)).decode(), "format": "wav"}


BAD_REQUESTS = [
    ("text", "{broken", 400, "bad_request"), ("text", "[1]", 400, "bad_request"), ("text", "{}", 400, "bad_request"),
    ("text", {"text": ""}, 400, "bad_request"), ("text", {"text": 7}, 400, "bad_request"),
    ("text", {"text": "x" * (SETTINGS.SESSION_MAX_TEXT_CHARS + 1)}, 400, "bad_request"),
    ("text", {"text": "hi", "streaming": 1}, 400, "bad_request"),
    ("text", {"text": "x" * 100000}, 413, "body_too_large"),
    ("audio", {}, 400, "bad_request"), ("audio", {"audio_data": "@@@@", "format": "wav"}, 400, "bad_request"),
    ("audio", {"audio_data": "QUJD", "format": "aiff"}, 400, "bad_request"),
    ("audio", {"audio_data": base64.b64encode(b"plain text, no audio" * 20).decode()}, 415, "not_audio"),
    ("audio", audio_body(silence(1.0)), 422, "no_speech"), ("audio", audio_body(silence(0.1)), 422, "no_speech"),
    ("audio", {"audio_data": "A" * (2 << 20)}, 413, "body_too_large"),
    ("audio", audio_body(np.zeros(700_000, np.float32)), 413, "body_too_large"),
    ("audio", {"audio_data": base64.b64encode(wav_bytes(np.zeros(61 * 8000, np.float32), 8000)).decode()}, 413,
     "audio_too_large")]


def test_bad_requests_are_4xx_json_and_other_sessions_go_on(server):
    sid = create(server)
    status, body, kind = get(server, f"/api/v1/sessions/{sid}/video/latest")
    assert status == 404 and json.loads(body)["error"] == "no_reply_yet"
    for endpoint, body, code, error in BAD_REQUESTS:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(f"{server.url}/api/v1/sessions/{sid}/{endpoint}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=60)
        answer = json.loads(refused.value.read())
        assert (refused.value.code, answer["error"]) == (code, error) and answer["message"], (endpoint, str(body)[:60])
    other = create(server)
    status, answer = server.api("POST", f"/api/v1/sessions/{other}/text", {"text": "Hi!"}, timeout=120)
    assert status == 200 and answer["text"].strip()


# --- bounds: SESSION_MAX, delete, the idle timeout, abandoned sessions, a client that never reads (slow) -----

@pytest.fixture(scope="module")
def bounded(live_server_factory, tmp_path_factory):
    directory = tmp_path_factory.mktemp("bounded")
    server = live_server_factory({"SESSION_DIR": directory, "SESSION_MAX": 3, "SESSION_IDLE_SECONDS": 4,
                                  "SESSION_WS_QUEUE_KB": 64, "LLM_MAX_TOKENS": 24})
    server.session_dir = directory
    return server


@pytest.fixture
def empty(bounded):
    """The bounded server without sessions (those of earlier tests deleted)."""
    for session in bounded.api("GET", "/api/v1/sessions")[1]["sessions"]:
        bounded.api("DELETE", f"/api/v1/sessions/{session['session_id']}")
    return bounded


def files(server) -> dict[str, pathlib.Path]:
    """The sessions' directories by id: SESSION_DIR/<the process's directory>/<session id>."""
    return {d.name: d for d in server.session_dir.glob("*/*") if d.is_dir()}


def reply(server, sid: str, text: str = "Hi!") -> dict:
    status, answer = server.api("POST", f"/api/v1/sessions/{sid}/text", {"text": text}, timeout=120)
    assert status == 200, answer
    return answer


def closed_with(ws: Socket, timeout: float = 10) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout)
    return closed.value.rcvd.code


def test_one_more_than_session_max_ends_the_least_recently_used(empty):
    a = create(empty)
    reply(empty, a)
    assert (files(empty)[a] / "latest.mp4").is_file() and (files(empty)[a] / "latest.wav").is_file()
    ws = Socket(empty, a)
    assert ws.recv()["data"]["created"] is False
    b, c = create(empty), create(empty)
    empty.api("GET", f"/api/v1/sessions/{b}")
    empty.api("GET", f"/api/v1/sessions/{c}")
    d = create(empty)
    assert closed_with(ws) == 4409
    assert empty.api("GET", f"/api/v1/sessions/{a}")[0] == 404 and a not in files(empty)
    assert {b, c, d} == set(files(empty)) == {s["session_id"] for s in empty.api("GET", "/api/v1/sessions")[1]["sessions"]}


def test_delete_mid_reply_frees_everything_at_once(empty):
    sid = create(empty)
    ws = Socket(empty, sid)
    ws.recv()
    ws.send({"type": "text", "text": "Tell me a story about a lighthouse keeper.", "streaming": True})
    assert ws.recv()["type"] == "text_chunk"
    assert sid in files(empty)
    status, answer = empty.api("DELETE", f"/api/v1/sessions/{sid}")
    assert status == 200 and answer["status"] == "deleted" and sid not in files(empty)
    assert closed_with(ws) == 4404
    assert empty.api("GET", f"/api/v1/sessions/{sid}")[0] == 404
    assert empty.api("DELETE", f"/api/v1/sessions/{sid}")[0] == 404


def test_an_idle_session_ends_and_its_files_go(empty):
    sid = create(empty)
    reply(empty, sid)
    t0 = time.monotonic()
    while sid in files(empty) and time.monotonic() - t0 < 15:
        time.sleep(0.2)                              # (looking at the files does not use the session)
    assert sid not in files(empty) and 4 <= time.monotonic() - t0 + 1 < 15
    assert empty.api("GET", f"/api/v1/sessions/{sid}")[0] == 404


def worker(server) -> int:
    """The gunicorn worker's pid (the server's process is its master)."""
    children = pathlib.Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return int(children[0])


def usage(pid: int) -> dict:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
    return {"rss": rss, "threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def test_sessions_made_and_abandoned_leave_nothing_behind(empty):
    pid = worker(empty)
    # Models loaded, and both render threads have drawn and encoded once (each thread's allocator arena and
    # x264's buffers are the process's steady state, not something a session leaves behind)
    warm = [threading.Thread(target=reply, args=(empty, create(empty), "Tell me about the sea.")) for _ in range(2)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    time.sleep(6)
    start = usage(pid)
    for i in range(12):
        sid = create(empty)
        if i % 3 == 0:
            reply(empty, sid, "Hello there!")
        elif i % 3 == 1:                              # a socket dropped mid-reply, no goodbye
            ws = Socket(empty, sid)
            ws.recv()
            ws.send({"type": "text", "text": "Tell me about the sea.", "streaming": True})
            ws.recv()
            ws.ws.socket.shutdown(socket.SHUT_RDWR)
            ws.ws.socket.close()
    t0 = time.monotonic()
    while (files(empty) or empty.api("GET", "/api/v1/sessions")[1]["sessions"]) and time.monotonic() - t0 < 20:
        time.sleep(0.5)
    time.sleep(1)
    end = usage(pid)
    print(f"before {start}, after {end}")
    assert not files(empty) and not empty.api("GET", "/api/v1/sessions")[1]["sessions"]
    assert end["threads"] <= start["threads"] + 2 and end["fds"] <= start["fds"] + 2, (start, end)
    assert end["rss"] < start["rss"] + (40 << 20), (start, end)


def test_a_client_that_never_reads_is_closed_4013_and_costs_a_bounded_queue(empty):
    sid = create(empty)
    with socket.create_connection(("127.0.0.1", empty.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET /ws/{sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        frame = bytes((0x81, 0x80 | 8)) + b"\0\0\0\0" + b"not json"     # masked with a zero key
        for _ in range(60):                         # 3000 error messages asked for, at about 10000 a second, none read
            s.sendall(frame * 50)
            time.sleep(0.005)
        time.sleep(0.3)                             # (then read within the server's 2 s wait for our close)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    messages, code, i = 0, None, 0
    while i + 2 <= len(data):
        opcode, n, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        if opcode == 0x8:
            code = int.from_bytes(data[i:i + 2], "big")
        messages += opcode == 0x1
        i += n
    print(f"closed {code} after {messages} messages ({len(data)} bytes)")
    assert code == 4013 and 0 < messages < 3000, (code, messages)
    reply(empty, create(empty))                     # the server goes on
