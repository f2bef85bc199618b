"""The server's HTTP calls as data (method, path, body, how to read the answer) and the messages a stream sends,
so the sync and the async client differ only in how they move bytes."""
from __future__ import annotations

import base64
import json
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from avatar_client.protocol import AvatarError, ChatReply, Reply, SessionInfo

AUDIO_FORMATS = ("wav", "webm", "ogg", "mp3")
Audio = bytes | str | os.PathLike
# The session socket: no compression (the server's frames are its own), MP4 chunks of any size, no keepalive pings
WS_OPTIONS = {"compression": None, "max_size": None, "ping_interval": None, "close_timeout": 2}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict | None = None
    read: Callable[[Any], Any] = field(default=lambda answer: answer)
    raw: bool = False                       # the answer is bytes (a WAV, an MP4), not JSON
    also_ok: tuple[int, ...] = ()           # error statuses that are answers too (health's 503)

    def data(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body).encode()

    def answer(self, status: int, body: bytes):
        """The call's result from the server's answer, or the AvatarError it is."""
        if status >= 400 and status not in self.also_ok:
            raise AvatarError.from_response(status, body)
        if self.raw:
            return self.read(body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise AvatarError(status, "bad_answer", f"{self.method} {self.path}: the answer is not JSON: "
                                                    f"{body[:80]!r}") from None
        return self.read(answer)


def _session(session_id: str, tail: str = "") -> str:
    return f"/api/v1/sessions/{quote(session_id, safe='')}{tail}"


def create_session(config: dict | None) -> Call:
    return Call("POST", "/api/v1/sessions", {"config": config} if config else None, SessionInfo.from_json)


def get_session(session_id: str) -> Call:
    return Call("GET", _session(session_id), read=SessionInfo.from_json)


def list_sessions() -> Call:
    return Call("GET", "/api/v1/sessions", read=lambda answer: [SessionInfo.from_json(s) for s in answer["sessions"]])


def delete_session(session_id: str) -> Call:
    return Call("DELETE", _session(session_id), read=lambda answer: None)


def send_text(session_id: str, text: str) -> Call:
    return Call("POST", _session(session_id, "/text"), {"text": text, "streaming": False}, Reply.from_json)


def send_audio(session_id: str, audio: Audio, format: str | None) -> Call:
    data, fmt = audio_payload(audio, format)
    return Call("POST", _session(session_id, "/audio"), {"audio_data": data, "format": fmt}, Reply.from_json)


def latest(session_id: str, kind: str) -> Call:
    return Call("GET", _session(session_id, f"/{kind}/latest"), raw=True)


def chat(message: str, history: list[dict] | None, stream: bool = False) -> Call:
    body = {"message": message} | ({"conversation_history": history} if history else {})
    return Call("POST", "/api/chat/stream" if stream else "/api/chat/completion", body, ChatReply.from_json)


def models() -> Call:
    return Call("GET", "/api/chat/models")


def health() -> Call:
    return Call("GET", "/api/chat/health", also_ok=(503,))


def audio_payload(audio: Audio, format: str | None = None) -> tuple[str, str]:
    """(base64, format) for audio bytes or a file; a file's suffix names its format unless `format` does
    (the server probes the bytes anyway)."""
    if isinstance(audio, bytes | bytearray):
        raw, suffix = bytes(audio), ""
    else:
        path = pathlib.Path(audio)
        raw, suffix = path.read_bytes(), path.suffix.lstrip(".").lower()
    fmt = (format or (suffix if suffix in AUDIO_FORMATS else "wav")).lower()
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {', '.join(AUDIO_FORMATS)}, not {fmt!r}")
    return base64.b64encode(raw).decode(), fmt


def turn_message(text: str | None, audio: Audio | None, format: str | None, streaming: bool) -> dict:
    """The WebSocket message that starts a turn: text, or audio (exactly one)."""
    if (text is None) == (audio is None):
        raise ValueError("stream() takes a text or audio=…, one of the two")
    if text is not None:
        return {"type": "text", "text": text, "streaming": streaming}
    data, fmt = audio_payload(audio, format)
    return {"type": "audio", "data": data, "format": fmt}


def ws_url(base_url: str, session_id: str) -> str:
    """http://host:port → ws://host:port/ws/<session id> (https → wss)."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/{quote(session_id, safe='')}"


def headers(api_key: str | None, json_body: bool = True) -> dict[str, str]:
    """The API key, when there is one, as `Authorization: Bearer` (the server's rooms and avatars take it so)."""
    return ({"Content-Type": "application/json"} if json_body else {}) | (
        {"Authorization": f"Bearer {api_key}"} if api_key else {})
