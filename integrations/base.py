"""AvatarIntegration: what every platform bot (a terminal, Discord, Slack, Telegram …) has in common. A platform's
message comes in through on_message; the bot keeps one avatar session per user, streams the reply through
AsyncAvatarClient and hands its text and MP4s to send_to_platform. A subclass writes send_to_platform and run."""
from __future__ import annotations

import asyncio
import logging
import pathlib
import re
import signal
from abc import ABC, abstractmethod
from contextlib import aclosing, suppress
from dataclasses import dataclass, field

from avatar_client import (
    AsyncAvatarClient,
    AvatarError,
    Complete,
    Error,
    Interrupted,
    SessionInfo,
    TextChunk,
    Transcript,
    VideoChunk,
)

log = logging.getLogger(__name__)
ENDED = {"session_deleted", "session_expired", "session_evicted"}     # mid-reply: the next message makes a new one


@dataclass
class AvatarResponse:
    """A reply for the platform: its text, one MP4 per sentence (in order, each playable on its own) and, when
    the bot writes them out, their files. `interrupted`: a newer message stopped it (its reply follows);
    `error`: the server refused the message or the turn failed."""
    user_id: str
    session_id: str
    text: str = ""
    videos: list[bytes] = field(default_factory=list, repr=False)
    paths: list[pathlib.Path] = field(default_factory=list)
    transcript: str | None = None
    interrupted: bool = False
    error: Error | None = None


class AvatarIntegration(ABC):
    """The base of a platform bot. `config` is the session's {avatar_template?, llm_model?, tts_voice?};
    `out_dir`, when given, is where each sentence's MP4 is written
    (`<user>-<session id's first 8>-<turn>-<n>.mp4`).

    Use it as `asyncio.run(bot.serve())`: run() is the platform's loop, and the users' sessions are deleted when
    it ends (Ctrl-C included)."""

    def __init__(self, server_url: str, config: dict | None = None, *, out_dir: str | pathlib.Path | None = None,
                 api_key: str | None = None, timeout: float = 120.0):
        self.client = AsyncAvatarClient(server_url, api_key, timeout)
        self.config = dict(config or {})
        self.out_dir = pathlib.Path(out_dir) if out_dir is not None else None
        self.sessions: dict[str, str] = {}          # user id → session id
        self.turns: dict[str, int] = {}             # user id → replies asked for (names the files)
        self._creating: dict[str, asyncio.Lock] = {}

    # --- what a platform calls ---

    async def on_message(self, user_id: str, text: str) -> AvatarResponse:
        """A user's message: the avatar's reply, sent to the platform unless a newer message interrupted it."""
        response = await self.get_avatar_response(user_id, text)
        if not response.interrupted:
            await self.send_to_platform(user_id, response)
        return response

    async def get_avatar_response(self, user_id: str, text: str) -> AvatarResponse:
        """The user's session's reply to `text`, streamed (on_text_chunk and on_video_chunk see it as it comes).
        A session that ended since (idle, evicted) is made again; one that ends mid-reply is forgotten, so the
        next message makes a new one, and the AvatarError is raised."""
        session_id = await self.session_for(user_id)
        try:
            return await self._stream(user_id, session_id, text)
        except AvatarError as exc:
            if exc.code not in ENDED and exc.code != "session_not_found":
                raise
            if self.sessions.get(user_id) == session_id:
                del self.sessions[user_id]
            if exc.code != "session_not_found":
                raise
        return await self._stream(user_id, await self.session_for(user_id), text)

    async def session_for(self, user_id: str) -> str:
        """The user's session id: made on their first message, the same one after."""
        async with self._creating.setdefault(user_id, asyncio.Lock()):
            if user_id not in self.sessions:
                info = await self.client.create_session(self.config or None)
                self.sessions[user_id] = info.session_id
                await self.on_session_created(user_id, info)
            return self.sessions[user_id]

    async def end_session(self, user_id: str) -> None:
        """Forget the user's session and delete it on the server (a reply still streaming stops)."""
        session_id = self.sessions.pop(user_id, None)
        if session_id is not None:
            with suppress(AvatarError):
                await self.client.delete_session(session_id)

    async def serve(self) -> None:
        """run(), then the sessions deleted and the client closed, however run() ends (SIGTERM cancels it, as
        Ctrl-C does: asyncio.run then raises CancelledError or KeyboardInterrupt)."""
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        with suppress(NotImplementedError, ValueError, RuntimeError):     # (only in the main thread, on Unix)
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await self.run()
        finally:
            with suppress(NotImplementedError, ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
            await self.close()

    async def close(self) -> None:
        for user_id in list(self.sessions):
            await self.end_session(user_id)
        await self.client.aclose()

    # --- what a platform's subclass writes ---

    @abstractmethod
    async def send_to_platform(self, user_id: str, response: AvatarResponse) -> None:
        """Deliver the reply: its text, and its videos (response.videos as bytes, or response.paths)."""

    @abstractmethod
    async def run(self) -> None:
        """The platform's main loop: receive messages and call on_message for each."""

    async def on_session_created(self, user_id: str, info: SessionInfo) -> None:
        """A user's session was made (`info.warnings` say what the server replaced)."""
        log.info("user %s: session %s%s", user_id, info.session_id, "".join(f"; warning: {w}" for w in info.warnings))

    async def on_text_chunk(self, user_id: str, chunk: str) -> None:
        """A piece of the reply's text as the model writes it (a terminal prints it; a chat edits its message)."""
        log.debug("user %s: text %r", user_id, chunk)

    async def on_video_chunk(self, user_id: str, video: VideoChunk, path: pathlib.Path | None) -> None:
        """A sentence's MP4, as soon as it is rendered (`path`: where it was written, with `out_dir`)."""
        log.debug("user %s: video %d bytes, %.2f s: %r", user_id, len(video.mp4), video.duration, video.text)

    # --- the stream ---

    async def _stream(self, user_id: str, session_id: str, text: str) -> AvatarResponse:
        turn = self.turns[user_id] = self.turns.get(user_id, 0) + 1
        response, parts = AvatarResponse(user_id, session_id), []
        async with aclosing(self.client.stream(session_id, text)) as events:
            async for event in events:
                if isinstance(event, TextChunk):
                    parts.append(event.text)
                    await self.on_text_chunk(user_id, event.text)
                elif isinstance(event, VideoChunk):
                    response.videos.append(event.mp4)
                    path = self._write(user_id, session_id, turn, len(response.videos), event.mp4)
                    if path is not None:
                        response.paths.append(path)
                    await self.on_video_chunk(user_id, event, path)
                elif isinstance(event, Transcript):
                    response.transcript = event.text
                elif isinstance(event, Complete):
                    response.text = event.full_text
                elif isinstance(event, Interrupted):
                    response.interrupted = True
                elif isinstance(event, Error):
                    response.error = event
        response.text = response.text or "".join(parts)        # (what came before an interruption or an error)
        return response

    def _write(self, user_id: str, session_id: str, turn: int, n: int, mp4: bytes) -> pathlib.Path | None:
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        user = re.sub(r"[^A-Za-z0-9_.-]", "_", user_id)[:64]
        path = self.out_dir / f"{user}-{session_id[:8]}-{turn:03d}-{n:02d}.mp4"
        path.write_bytes(mp4)
        return path
