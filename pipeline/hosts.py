"""Gives each room its record (transcript), its AI host when it wants one, and its minutes: made on request, on
"@AI summarize", and when the last person leaves; kept after the room closes for MINUTES_TTL seconds."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass

from config import Settings
from meeting.room import JitsiRoom
from pipeline.host import AIHost
from pipeline.llm import LLMStage, make_llm
from pipeline.minutes import Minutes, llm_summary, make_minutes, meeting_record
from pipeline.runtime import HostRuntime
from pipeline.speech import HostSpeech
from pipeline.transcript import Transcript

log = logging.getLogger(__name__)


class RoomRecorder:
    """Follows every room: keeps its chat in the transcript when it has no host (the host keeps its own), and
    writes the minutes when the last person leaves."""

    def __init__(self, hosts: HostManager, record: RoomRecord):
        self.hosts, self.record, self.room, self.transcript = hosts, record, record.room, record.transcript

    def heard_chat(self, member, chat) -> None:
        if self.record.host is None:
            self.transcript.add(member.user_id, member.display_name, chat.text, "chat")

    def heard_audio(self, member, audio) -> None:
        pass

    def heard_audio_end(self, member) -> None:
        pass

    def members_changed(self, humans: int) -> None:
        if humans == 0 and self.room.started_at is not None and not self.room.present():
            self.hosts.keep_minutes(self.room.room_id)


@dataclass
class RoomRecord:
    room: JitsiRoom
    transcript: Transcript
    host: AIHost | None


class MinutesStore:
    """Minutes of rooms that emptied, kept `ttl` seconds (also after their room closes)."""

    def __init__(self, ttl: float, clock=time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._kept: dict[str, tuple[float, Minutes]] = {}
        self._lock = threading.Lock()

    def put(self, minutes: Minutes) -> None:
        with self._lock:
            self._kept[minutes.room_id] = (self.clock() + self.ttl, minutes)

    def get(self, room_id: str) -> Minutes | None:
        self._prune()
        kept = self._kept.get(room_id)
        return kept[1] if kept else None

    def all(self) -> list[Minutes]:
        self._prune()
        with self._lock:
            return sorted((m for _, m in self._kept.values()), key=lambda m: m.generated_at, reverse=True)

    def _prune(self) -> None:
        now = self.clock()
        with self._lock:
            for room_id in [r for r, (until, _) in self._kept.items() if until < now]:
                del self._kept[room_id]


class HostManager:
    def __init__(self, settings: Settings, bus=None):
        self.settings = settings
        self.bus = bus                         # with Redis: a room's host runs in the process holding its lease
        self.runtime = HostRuntime(settings)
        self.store = MinutesStore(settings["MINUTES_TTL"])
        self._records: dict[str, RoomRecord] = {}
        self._lock = threading.Lock()
        self._preload: concurrent.futures.Future | None = None

    def open(self, room: JitsiRoom, with_host: bool) -> RoomRecord:
        """Follow a room opened in this process; give it its AI host here, or (with Redis) wherever the room's
        host lease is held, taking it over when that process dies."""
        record = RoomRecord(room, Transcript(), None)
        room.listeners.append(RoomRecorder(self, record))
        with self._lock:
            self._records[room.room_id] = record
        if with_host and (room.link is None or self.bus.want_host(room.room_id, lambda: self._start_host(record))):
            self._start_host(record)
        return record

    def _start_host(self, record: RoomRecord) -> None:
        if record.host is None and self._records.get(record.room.room_id) is record:
            host = AIHost(record.room, self.runtime, record.transcript, self.minutes_of)
            host.start()
            record.host = host

    def preload(self) -> None:
        """Load the host's models for the default language in the background (once), so that readiness can
        wait for them instead of the first room."""
        if self._preload is None and self.settings.HOST_ENABLED:
            speech = HostSpeech(self.runtime, self.settings.LANGUAGE)
            self._preload = self.runtime.submit(speech.load(lambda what: None))

    def models_state(self) -> str:
        """"off" (no AI host), "loading", "loaded" or "failed: …"; asking starts the loading."""
        if not self.settings.HOST_ENABLED:
            return "off"
        self.preload()
        if not self._preload.done():
            return "loading"
        exc = self._preload.exception()
        return "loaded" if exc is None else f"failed: {type(exc).__name__}: {exc}"

    def records(self) -> list[RoomRecord]:
        with self._lock:
            return list(self._records.values())

    def record(self, room_id: str) -> RoomRecord | None:
        return self._records.get(room_id)

    def close(self, room_id: str) -> None:
        with self._lock:
            record = self._records.pop(room_id, None)
        if record is not None and record.host is not None:
            record.host.stop()

    # --- minutes ------------------------------------------------------------------------------

    async def minutes_of(self, room_id: str) -> Minutes:
        """A live room's minutes now (on the host loop). The structure and its summary come from the rules, in a
        worker thread; a configured remote LLM rewrites the summary's prose, within LLM_TIMEOUT."""
        record = self._records[room_id]
        host_id, host_name = self.settings["HOST_USER_ID"], self.settings["HOST_NAME"]
        meeting = meeting_record(record.room, record.transcript, host_id, host_name)
        minutes = await asyncio.to_thread(make_minutes, meeting)
        if self.settings["LLM_BASE_URL"] and meeting.content():
            llm = make_llm(self.settings)
            prose = await llm_summary(minutes, meeting.content(), LLMStage(llm, self.settings["LLM_TIMEOUT"], 300))
            if prose:
                minutes.summary, minutes.summary_by = prose, llm.describe()
        return minutes

    def minutes(self, room_id: str, timeout: float = 30.0) -> Minutes | None:
        """The minutes of a room: made now while the room is open, else the ones kept when it emptied."""
        if room_id not in self._records:
            return self.store.get(room_id)
        future = self.runtime.submit(self.minutes_of(room_id))
        try:
            return future.result(timeout)
        except Exception:
            future.cancel()
            log.exception("room %s: minutes failed", room_id)
            return self.store.get(room_id)

    def keep_minutes(self, room_id: str) -> None:
        """The room just emptied: write its minutes and keep them (in the background)."""
        async def keep() -> None:
            if room_id in self._records:
                minutes = await self.minutes_of(room_id)
                self.store.put(minutes)
                log.info("room %s: minutes kept (%d decisions, %d action items)", room_id,
                         len(minutes.notes.decisions), len(minutes.notes.action_items))
        self.runtime.submit(keep()).add_done_callback(_log_failure)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("keeping minutes failed", exc_info=future.exception())
