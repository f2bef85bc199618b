"""The sync client: HTTP through the standard library, the session's WebSocket through `websockets`' sync client."""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import suppress

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from avatar_client import calls
from avatar_client.calls import Audio
from avatar_client.protocol import (
    AvatarError,
    ChatReply,
    Event,
    Reply,
    SessionInfo,
    SSEParser,
    Streams,
    Turn,
    chat_delta,
)


class AvatarClient:
    """A client of one server's sessions and chat API (docs/SESSIONS.md, docs/CHAT.md). Every failure is an
    AvatarError. Safe to share between threads; interrupt() may be called from another thread than the stream's.

    `timeout`: seconds to wait for an answer (a whole reply, over HTTP) or for a stream's next message."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0):
        self.base_url, self.api_key, self.timeout = base_url.rstrip("/"), api_key, timeout
        self._streams = Streams()

    # --- sessions over HTTP ---

    def create_session(self, config: dict | None = None) -> SessionInfo:
        """A new session; `config` is {avatar_template?, llm_model?, tts_voice?}, and what this server cannot
        do is replaced and named in the answer's `warnings`."""
        return self._call(calls.create_session(config))

    def get_session(self, session_id: str) -> SessionInfo:
        return self._call(calls.get_session(session_id))

    def list_sessions(self) -> list[SessionInfo]:
        return self._call(calls.list_sessions())

    def delete_session(self, session_id: str) -> None:
        self._call(calls.delete_session(session_id))

    def send_text(self, session_id: str, text: str) -> Reply:
        """The whole reply to `text` (waits until its video is rendered)."""
        return self._call(calls.send_text(session_id, text))

    def send_audio(self, session_id: str, audio: Audio, format: str | None = None) -> Reply:
        """The whole reply to speech: bytes or a file (wav, webm, ogg, mp3); `transcript` is what was heard."""
        return self._call(calls.send_audio(session_id, audio, format))

    def latest_audio(self, session_id: str) -> bytes:
        """The latest reply as a WAV (16-bit mono, 32 kHz)."""
        return self._call(calls.latest(session_id, "audio"))

    def latest_video(self, session_id: str) -> bytes:
        """The latest reply as an MP4 (H.264 + AAC, fast start)."""
        return self._call(calls.latest(session_id, "video"))

    # --- streaming over the WebSocket ---

    def stream(self, session_id: str, text: str | None = None, *, audio: Audio | None = None,
               format: str | None = None, streaming: bool = True, create: bool = False) -> Iterator[Event]:
        """The reply to `text` (or to `audio`) as it is made: TextChunk…, a VideoChunk per sentence, then one of
        Complete, Interrupted or Error, where the iterator ends. Each stream has its own connection; a newer
        stream to the same session interrupts this one. A session that does not exist is an AvatarError 404
        (`create=True`: the server makes it, with the defaults). Leaving the loop early stops the reply."""
        message = calls.turn_message(text, audio, format, streaming)
        return self._stream(session_id, message, create)

    def interrupt(self, session_id: str) -> bool:
        """Stop the reply this client is streaming for the session (its stream ends with Interrupted); False
        when there is none."""
        turn = self._streams.current(session_id)
        if turn is None or turn.socket is None:
            return False
        turn.interrupted = True
        try:
            turn.socket.send(json.dumps({"type": "interrupt"}))
        except ConnectionClosed:
            return False
        return True

    def _stream(self, session_id: str, message: dict, create: bool) -> Iterator[Event]:
        turn = self._streams.begin(session_id, self.timeout)
        try:
            ws = self._connect(session_id)
        except BaseException:
            self._streams.end(turn)
            raise
        try:
            hello = self._next(ws, turn, raw=True)
            if not isinstance(hello, str | bytes):            # a newer stream took the session already
                yield hello
                return
            if turn.hello(hello) and not create:
                ws.close()
                with suppress(AvatarError):
                    self.delete_session(session_id)          # the server made it on connect: unmake it
                raise AvatarError(404, "session_not_found", f"no session {session_id!r} (it ended, or never existed)")
            turn.socket = ws
            with suppress(ConnectionClosed):                 # (then the next recv says why)
                ws.send(json.dumps(message))
            while not turn.done:
                if (event := self._next(ws, turn)) is not None:
                    yield event
        finally:
            self._streams.end(turn)
            ws.close()

    def _connect(self, session_id: str) -> ClientConnection:
        url = calls.ws_url(self.base_url, session_id)
        try:
            return connect(url, additional_headers=calls.headers(self.api_key, False), open_timeout=self.timeout,
                           **calls.WS_OPTIONS).__enter__()         # (entered: websockets 17 wants its context manager)
        except InvalidStatus as exc:
            raise AvatarError.from_response(exc.response.status_code, exc.response.body or b"") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise AvatarError(None, "unreachable", f"cannot open {url}: {exc}") from None

    @staticmethod
    def _next(ws: ClientConnection, turn: Turn, raw: bool = False):
        """The next message (raw) or the event it makes."""
        try:
            message = ws.recv(turn.wait)
        except TimeoutError:
            return turn.timed_out()
        except ConnectionClosed as exc:
            return turn.closed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")
        return message if raw else turn.feed(message)

    # --- the chat API ---

    def chat(self, message: str, history: list[dict] | None = None) -> ChatReply:
        """The LLM's whole answer; `history` is [{role, content}, …] (the server keeps none)."""
        return self._call(calls.chat(message, history))

    def chat_stream(self, message: str, history: list[dict] | None = None) -> Iterator[str]:
        """The LLM's answer piece by piece as it is written; leaving the loop stops the generation."""
        call, parser = calls.chat(message, history, stream=True), SSEParser()
        try:
            with self._open(call) as response:
                for line in response:
                    if (event := parser.feed(line.decode("utf-8"))) is not None:
                        if (delta := chat_delta(*event)) is None:
                            return
                        yield delta
        except (OSError, http.client.HTTPException) as exc:
            raise self._failed(call, exc) from None

    def models(self) -> dict:
        return self._call(calls.models())

    def health(self) -> dict:
        """Whether the LLM answers: the server's answer, `reachable` true or false (a 503 is an answer here)."""
        return self._call(calls.health())

    # --- HTTP ---

    def _call(self, call: calls.Call):
        try:
            with self._open(call) as response:
                return call.answer(response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise self._failed(call, exc) from None

    def _open(self, call: calls.Call):
        """The response (an error status that is an answer too), or AvatarError."""
        request = urllib.request.Request(self.base_url + call.path, data=call.data(), method=call.method,
                                         headers=calls.headers(self.api_key, call.body is not None))
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            if err.code in call.also_ok:
                return err
            with err:
                raise AvatarError.from_response(err.code, err.read()) from None

    def _failed(self, call: calls.Call, exc: Exception) -> AvatarError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return AvatarError(None, "timeout", f"{call.method} {call.path}: no answer within {self.timeout:g} s")
        return AvatarError(None, "unreachable", f"{call.method} {self.base_url}{call.path}: {reason}")
