"""What the server says, as Python: its errors, the results of its calls, a stream's events (docs/SESSIONS.md,
docs/CHAT.md). No I/O here, so the sync and the async client read the wire the same way."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus

# The session WebSocket's close codes (docs/SESSIONS.md), named as AvatarError.code.
CLOSE_CODES = {1000: "connection_closed", 1001: "server_shutting_down", 1002: "protocol_error",
               1007: "protocol_error", 1009: "message_too_big", 1011: "server_error", 1012: "server_restarting",
               4013: "too_slow", 4400: "bad_session_id", 4404: "session_deleted", 4408: "session_expired",
               4409: "session_evicted", 4410: "session_taken"}
INTERRUPT_GRACE = 5.0       # seconds a stream waits for `interrupted` after interrupt() before it ends anyway


class AvatarError(Exception):
    """Everything the server refused or could not do, as one type. `status`: the HTTP status, or the WebSocket's
    close code (1000 and up), or None when no answer came; `code`: the server's `error` (`session_not_found`,
    `bad_request` …), a close code's name (CLOSE_CODES), `unreachable` or `timeout`; `message`: why."""

    def __init__(self, status: int | None, code: str, message: str):
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message = status, code, message

    @classmethod
    def from_response(cls, status: int, body: bytes) -> AvatarError:
        """An HTTP error answer: the server's JSON {error, message}, or whatever a proxy put there."""
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            return cls(status, answer["error"], str(answer.get("message") or answer["error"]))
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "HTTP error"
        return cls(status, f"http_{status}", body.decode("utf-8", "replace").strip()[:200] or reason)

    @classmethod
    def from_close(cls, code: int | None, reason: str = "") -> AvatarError:
        """The WebSocket closed before the turn ended."""
        if code is None:
            return cls(None, "connection_lost", "the connection dropped without a close frame")
        return cls(code, CLOSE_CODES.get(code, f"closed_{code}"), reason or "the server closed the connection")


# --- results of calls ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionInfo:
    """A session as the server describes it; `warnings` name what it asked for that this server replaced."""
    session_id: str
    status: str
    created_at: str
    config: dict
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, answer: dict) -> SessionInfo:
        return cls(answer["session_id"], answer.get("status", "active"), answer.get("created_at", ""),
                   answer.get("config") or {}, list(answer.get("warnings") or []))


@dataclass(frozen=True)
class Reply:
    """A whole reply over HTTP; the URLs are paths on the server (AvatarClient.latest_* fetch them)."""
    session_id: str
    text: str
    audio_url: str | None
    video_url: str | None
    transcript: str | None = None

    @classmethod
    def from_json(cls, answer: dict) -> Reply:
        return cls(answer["session_id"], answer["text"], answer.get("audio_url"), answer.get("video_url"),
                   answer.get("transcript"))


@dataclass(frozen=True)
class ChatReply:
    response: str
    model: str

    @classmethod
    def from_json(cls, answer: dict) -> ChatReply:
        return cls(answer["response"], answer.get("model", ""))


# --- a stream's events --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transcript:
    """(Audio turns) what the server heard, before the reply."""
    text: str


@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply's text as the model writes it."""
    text: str


@dataclass(frozen=True)
class VideoChunk:
    """One sentence as an MP4 (H.264 + AAC) that plays on its own; the chunks play back to back without a gap."""
    text: str
    mp4: bytes = field(repr=False)
    duration: float = 0.0


@dataclass(frozen=True)
class Complete:
    """The reply is done: `full_text` is the TextChunks joined; the URLs give the whole reply."""
    full_text: str
    audio_url: str | None = None
    video_url: str | None = None
    transcript: str | None = None


@dataclass(frozen=True)
class Interrupted:
    """The reply was stopped: interrupt(), a newer message to the session, or a newer stream of this client."""


@dataclass(frozen=True)
class Error:
    """The server refused the message or the turn failed (`code` as in AvatarError); the stream ends here."""
    code: str
    message: str


Event = Transcript | TextChunk | VideoChunk | Complete | Interrupted | Error
LAST = (Complete, Interrupted, Error)


class Turn:
    """One stream's state without its I/O: the socket's messages in, events out, and what a close or a silence
    means. Each clients' loop is then: recv → feed, until `done`."""

    def __init__(self, session_id: str, timeout: float, streams: Streams):
        self.session_id, self.timeout, self.streams = session_id, timeout, streams
        self.socket = None                      # set once the session said hello
        self.interrupted = self.done = False
        self._meta: dict | None = None

    @property
    def wait(self) -> float:
        """Seconds to wait for the next message: a short grace once interrupted."""
        return INTERRUPT_GRACE if self.interrupted else self.timeout

    def hello(self, message: str | bytes) -> bool:
        """The server's first message; True when connecting made the session (it did not exist)."""
        hello = _json(message) if isinstance(message, str) else None
        if not isinstance(hello, dict) or hello.get("type") != "session":
            raise AvatarError(None, "bad_stream", f"expected the session message first, got {str(message)[:80]!r}")
        return bool((hello.get("data") or {}).get("created"))

    def feed(self, message: str | bytes) -> Event | None:
        """The event a message makes, if any (a video_chunk_meta waits for its bytes; pong and unknown types
        are skipped)."""
        if isinstance(message, bytes):
            if self._meta is None:
                raise AvatarError(None, "bad_stream", "a binary message without a video_chunk_meta before it")
            meta, self._meta = self._meta, None
            if len(message) != meta.get("size"):
                raise AvatarError(None, "bad_stream", f"video_chunk_meta said {meta.get('size')} bytes, "
                                                      f"{len(message)} came")
            return VideoChunk(meta.get("text", ""), message, float(meta.get("duration") or 0))
        if self._meta is not None:
            raise AvatarError(None, "bad_stream", f"expected the {self._meta.get('size')} bytes of an MP4")
        msg = _json(message)
        if not isinstance(msg, dict):
            raise AvatarError(None, "bad_stream", f"a message that is not a JSON object: {message[:80]!r}")
        kind, data = msg.get("type"), msg.get("data") or {}
        event = _EVENTS.get(kind, lambda data: None)(data)
        if kind == "video_chunk_meta":
            self._meta = data
        self.done = isinstance(event, LAST)
        return event

    def closed(self, code: int | None, reason: str) -> Event:
        """The socket closed mid-turn: Interrupted when a newer stream of this client took the session (4410);
        otherwise the close is an AvatarError."""
        if code == 4410 and self.streams.current(self.session_id) is not self:
            self.done = True
            return Interrupted()
        raise AvatarError.from_close(code, reason)

    def timed_out(self) -> Event:
        """No message within `wait`: after an interrupt that the server had nothing to stop, the turn is over."""
        if self.interrupted:
            self.done = True
            return Interrupted()
        raise AvatarError(None, "timeout", f"no message from the session's stream within {self.timeout:g} s")


def _json(text: str | bytes):
    try:
        return json.loads(text)
    except ValueError:
        return None


_EVENTS = {
    "transcript": lambda d: Transcript(d.get("text", "")),
    "text_chunk": lambda d: TextChunk(d.get("chunk", "")),
    "stream_complete": lambda d: Complete(d.get("full_text", ""), d.get("audio_url"), d.get("video_url"),
                                          d.get("transcript")),
    "interrupted": lambda d: Interrupted(),
    "error": lambda d: Error(d.get("error", "error"), d.get("message", "")),
}


class Streams:
    """The turn streaming each session, so interrupt() finds its socket and a stream taken over by a newer one
    of the same client (close 4410) knows it was interrupted, not robbed."""

    def __init__(self):
        self._turns: dict[str, Turn] = {}
        self._lock = threading.Lock()

    def begin(self, session_id: str, timeout: float) -> Turn:
        with self._lock:
            turn = self._turns[session_id] = Turn(session_id, timeout, self)
        return turn

    def current(self, session_id: str) -> Turn | None:
        with self._lock:
            return self._turns.get(session_id)

    def end(self, turn: Turn) -> None:
        with self._lock:
            if self._turns.get(turn.session_id) is turn:
                del self._turns[turn.session_id]


# --- the chat API's server-sent events ------------------------------------------------------------------------

class SSEParser:
    """Server-sent events from lines: each blank line ends an event, returned as (name, data as JSON)."""

    def __init__(self):
        self.name: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, dict] | None:
        line = line.rstrip("\r\n")
        if not line:
            event = (self.name or "message", json.loads("\n".join(self.data))) if self.data else None
            self.name, self.data = None, []
            return event
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            self.name = value
        elif key == "data":
            self.data.append(value)
        return None                                # comments (":…") and other fields


def chat_delta(name: str, data: dict) -> str | None:
    """A chat stream's event as its piece of text; None at `done`; an `error` event (the LLM failed mid-reply)
    raises."""
    if name == "error":
        raise AvatarError(200, data.get("error", "error"), data.get("message", ""))
    return None if name == "done" else data.get("delta", "")
