"""The async client: HTTP through aiohttp, the session's WebSocket through `websockets`' asyncio client. The same
calls, events and errors as the sync AvatarClient (avatar_client.calls, avatar_client.protocol)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import suppress

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

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


class AsyncAvatarClient:
    """AvatarClient for asyncio: the same methods, awaited; stream() and chat_stream() are async iterators. Close
    it (`await client.aclose()`, or `async with AsyncAvatarClient(…) as client`) to release its HTTP connections."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0):
        self.base_url, self.api_key, self.timeout = base_url.rstrip("/"), api_key, timeout
        self._streams = Streams()
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncAvatarClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- sessions over HTTP ---

    async def create_session(self, config: dict | None = None) -> SessionInfo:
        """A new session; what `config` asks for that this server cannot do is named in `warnings`."""
        return await self._call(calls.create_session(config))

    async def get_session(self, session_id: str) -> SessionInfo:
        return await self._call(calls.get_session(session_id))

    async def list_sessions(self) -> list[SessionInfo]:
        return await self._call(calls.list_sessions())

    async def delete_session(self, session_id: str) -> None:
        await self._call(calls.delete_session(session_id))

    async def send_text(self, session_id: str, text: str) -> Reply:
        return await self._call(calls.send_text(session_id, text))

    async def send_audio(self, session_id: str, audio: Audio, format: str | None = None) -> Reply:
        return await self._call(calls.send_audio(session_id, audio, format))

    async def latest_audio(self, session_id: str) -> bytes:
        return await self._call(calls.latest(session_id, "audio"))

    async def latest_video(self, session_id: str) -> bytes:
        return await self._call(calls.latest(session_id, "video"))

    # --- streaming over the WebSocket ---

    def stream(self, session_id: str, text: str | None = None, *, audio: Audio | None = None,
               format: str | None = None, streaming: bool = True, create: bool = False) -> AsyncIterator[Event]:
        """The reply as it is made (AvatarClient.stream): `async for event in client.stream(sid, "Hi")`."""
        message = calls.turn_message(text, audio, format, streaming)
        return self._stream(session_id, message, create)

    async def interrupt(self, session_id: str) -> bool:
        """Stop the reply this client is streaming for the session; False when there is none."""
        turn = self._streams.current(session_id)
        if turn is None or turn.socket is None:
            return False
        turn.interrupted = True
        try:
            await turn.socket.send(json.dumps({"type": "interrupt"}))
        except ConnectionClosed:
            return False
        return True

    async def _stream(self, session_id: str, message: dict, create: bool) -> AsyncIterator[Event]:
        turn = self._streams.begin(session_id, self.timeout)
        try:
            ws = await self._connect(session_id)
        except BaseException:
            self._streams.end(turn)
            raise
        try:
            hello = await self._next(ws, turn, raw=True)
            if not isinstance(hello, str | bytes):            # a newer stream took the session already
                yield hello
                return
            if turn.hello(hello) and not create:
                await ws.close()
                with suppress(AvatarError):
                    await self.delete_session(session_id)    # the server made it on connect: unmake it
                raise AvatarError(404, "session_not_found", f"no session {session_id!r} (it ended, or never existed)")
            turn.socket = ws
            with suppress(ConnectionClosed):                 # (then the next recv says why)
                await ws.send(json.dumps(message))
            while not turn.done:
                if (event := await self._next(ws, turn)) is not None:
                    yield event
        finally:
            self._streams.end(turn)
            await ws.close()

    async def _connect(self, session_id: str) -> ClientConnection:
        url = calls.ws_url(self.base_url, session_id)
        try:
            return await connect(url, additional_headers=calls.headers(self.api_key, False),
                                 open_timeout=self.timeout, **calls.WS_OPTIONS)
        except InvalidStatus as exc:
            raise AvatarError.from_response(exc.response.status_code, exc.response.body or b"") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise AvatarError(None, "unreachable", f"cannot open {url}: {exc}") from None

    @staticmethod
    async def _next(ws: ClientConnection, turn: Turn, raw: bool = False):
        try:
            message = await asyncio.wait_for(ws.recv(), turn.wait)
        except TimeoutError:
            return turn.timed_out()
        except ConnectionClosed as exc:
            return turn.closed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")
        return message if raw else turn.feed(message)

    # --- the chat API ---

    async def chat(self, message: str, history: list[dict] | None = None) -> ChatReply:
        return await self._call(calls.chat(message, history))

    async def chat_stream(self, message: str, history: list[dict] | None = None) -> AsyncIterator[str]:
        """The LLM's answer piece by piece: `async for delta in client.chat_stream("Hi")`."""
        call, parser = calls.chat(message, history, stream=True), SSEParser()
        try:
            async with self._session().request(call.method, self.base_url + call.path, data=call.data(),
                                               headers=calls.headers(self.api_key),
                                               timeout=aiohttp.ClientTimeout(sock_read=self.timeout)) as response:
                if response.status >= 400:
                    raise AvatarError.from_response(response.status, await response.read())
                async for line in response.content:
                    if (event := parser.feed(line.decode("utf-8"))) is not None:
                        if (delta := chat_delta(*event)) is None:
                            return
                        yield delta
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(call, exc) from None

    async def models(self) -> dict:
        return await self._call(calls.models())

    async def health(self) -> dict:
        """Whether the LLM answers (`reachable`); a 503 is an answer here."""
        return await self._call(calls.health())

    # --- HTTP ---

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def _call(self, call: calls.Call):
        try:
            async with self._session().request(call.method, self.base_url + call.path, data=call.data(),
                                               headers=calls.headers(self.api_key, call.body is not None)) as response:
                return call.answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(call, exc) from None

    def _failed(self, call: calls.Call, exc: Exception) -> AvatarError:
        if isinstance(exc, TimeoutError):
            return AvatarError(None, "timeout", f"{call.method} {call.path}: no answer within {self.timeout:g} s")
        return AvatarError(None, "unreachable", f"{call.method} {self.base_url}{call.path}: {exc}")
