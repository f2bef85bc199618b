"""Gives each room its record (transcript) and, when it wants one, its AI host; closes them with the room."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from meeting.room import JitsiRoom
from pipeline.host import AIHost
from pipeline.runtime import HostRuntime
from pipeline.transcript import Transcript, extractive_summary

log = logging.getLogger(__name__)


class ChatRecorder:
    """A room without a host still keeps its chat in the transcript."""

    def __init__(self, transcript: Transcript):
        self.transcript = transcript

    def heard_chat(self, member, chat) -> None:
        self.transcript.add(member.user_id, member.display_name, chat.text, "chat")

    def heard_audio(self, member, audio) -> None:
        pass

    def heard_audio_end(self, member) -> None:
        pass

    def members_changed(self, humans: int) -> None:
        pass


@dataclass
class RoomRecord:
    transcript: Transcript
    host: AIHost | None


class HostManager:
    def __init__(self, settings: dict):
        self.settings = settings
        self.runtime = HostRuntime(settings)
        self._records: dict[str, RoomRecord] = {}
        self._lock = threading.Lock()

    def open(self, room: JitsiRoom, with_host: bool) -> RoomRecord:
        transcript = Transcript()
        host = None
        if with_host:
            host = AIHost(room, self.runtime, transcript)
            host.start()
        else:
            room.listeners.append(ChatRecorder(transcript))
        record = RoomRecord(transcript, host)
        with self._lock:
            self._records[room.room_id] = record
        return record

    def record(self, room_id: str) -> RoomRecord | None:
        return self._records.get(room_id)

    def close(self, room_id: str) -> None:
        with self._lock:
            record = self._records.pop(room_id, None)
        if record is not None and record.host is not None:
            record.host.stop()

    def summary(self, room_id: str, language: str, timeout: float = 60.0) -> str:
        record = self._records.get(room_id)
        if record is None:
            return extractive_summary([], language)
        if record.host is None:
            return extractive_summary(record.transcript.lines(), language)
        future = self.runtime.submit(record.host.summary())
        try:
            return future.result(timeout)
        except Exception:                              # too slow or failed: the transcript's own summary
            future.cancel()
            log.exception("room %s: summary failed", room_id)
            return extractive_summary(record.transcript.lines(), language)
