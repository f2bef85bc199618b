"""The meeting manager: creates, finds and closes rooms, and joins and removes participants."""
from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

from config import DEFAULTS, Settings
from meeting.errors import InvalidRequest, RoomExists, RoomNotFound
from meeting.participant import Participant
from meeting.quality import QualityPolicy
from meeting.room import JitsiRoom, RoomLimits
from meeting.traffic import Traffic

log = logging.getLogger(__name__)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class MeetingSettings(RoomLimits):
    server_max_participants: int = DEFAULTS.MAX_PARTICIPANTS
    default_max_participants: int = DEFAULTS.DEFAULT_MAX_PARTICIPANTS
    tiers: str = DEFAULTS.QUALITY_TIERS
    tier_hysteresis: int = DEFAULTS.TIER_HYSTERESIS
    reservation_ttl: float = DEFAULTS.JOIN_TOKEN_TTL     # seconds a join may wait for its data channel
    empty_room_ttl: float = DEFAULTS.EMPTY_ROOM_TTL      # seconds an empty room lives on before it closes

    @classmethod
    def of(cls, s: Settings) -> MeetingSettings:
        return cls(server_max_participants=s.MAX_PARTICIPANTS,
                   default_max_participants=min(s.DEFAULT_MAX_PARTICIPANTS, s.MAX_PARTICIPANTS),
                   tiers=s.QUALITY_TIERS, tier_hysteresis=s.TIER_HYSTERESIS, reservation_ttl=s.JOIN_TOKEN_TTL,
                   empty_room_ttl=s.EMPTY_ROOM_TTL, **RoomLimits.of(s))


class MeetingManager:
    def __init__(self, settings: MeetingSettings | None = None, clock=time.monotonic):
        self.settings = settings or MeetingSettings()
        self.policy = QualityPolicy.parse(self.settings.tiers, self.settings.tier_hysteresis)
        self.clock = clock
        self._rooms: dict[str, JitsiRoom] = {}
        self._lock = threading.Lock()
        self.on_close: list = []             # callables(room_id) told when a room closes
        self.traffic = Traffic()             # what every room of this manager carried (monitor.metrics reads it)

    def create_room(self, created_by: str, room_id: str | None = None,
                    max_participants: int | None = None) -> JitsiRoom:
        check_id("user_id", created_by)
        if room_id is None:
            room_id = secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")
        check_id("room_id", room_id)
        cap = self.settings.server_max_participants
        size = self.settings.default_max_participants if max_participants is None else max_participants
        if not 2 <= size <= cap:
            raise InvalidRequest(f"max_participants must be between 2 and {cap}")
        s = self.settings
        with self._lock:
            closed = self._sweep_locked()
            taken = room_id in self._rooms
            if not taken:
                room = self._rooms[room_id] = JitsiRoom(room_id, size, self.policy, created_by, s, self.clock,
                                                                  self.traffic)
        self._closed(closed)
        if taken:
            raise RoomExists(f"room {room_id!r} already exists")
        log.info("room %s created by %s (max %d)", room_id, created_by, size)
        return room

    def get_room(self, room_id: str) -> JitsiRoom:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomNotFound(f"room {room_id!r} does not exist")
        return room

    def join(self, room_id: str, user_id: str, display_name: str | None = None,
             nonce: str | None = None) -> tuple[JitsiRoom, Participant]:
        check_id("user_id", user_id)
        room = self.get_room(room_id)
        room.expire_reservations(self.settings.reservation_ttl)
        return room, room.reserve(user_id, display_name or user_id, nonce=nonce)

    def place(self, room_id: str, user_id: str, nonce: str, display_name: str | None = None) -> tuple[JitsiRoom, Participant]:
        """The reservation a join token stands for, made now if there is none (see JitsiRoom.place_for)."""
        check_id("user_id", user_id)
        room = self.get_room(room_id)
        room.expire_reservations(self.settings.reservation_ttl)
        return room, room.place_for(user_id, nonce, display_name)

    def leave(self, room_id: str, user_id: str) -> Participant:
        room = self.get_room(room_id)
        return room.remove(user_id)

    def rooms(self) -> list[JitsiRoom]:
        with self._lock:
            closed = self._sweep_locked()
            rooms = list(self._rooms.values())
        self._closed(closed)
        return rooms

    def sweep(self) -> None:
        with self._lock:
            closed = self._sweep_locked()
        self._closed(closed)

    def _sweep_locked(self) -> list[str]:
        """Close the rooms empty for too long; returns their ids (tell `on_close` once the lock is let go)."""
        now, closed = self.clock(), []
        for room in list(self._rooms.values()):
            room.expire_reservations(self.settings.reservation_ttl)
            if room.emptied_at is not None and now - room.emptied_at > self.settings.empty_room_ttl:
                del self._rooms[room.room_id]
                log.info("room %s closed: empty for %.0f s", room.room_id, now - room.emptied_at)
                closed.append(room.room_id)
        return closed

    def _closed(self, room_ids: list[str]) -> None:
        for room_id in room_ids:
            for callback in self.on_close:
                try:
                    callback(room_id)
                except Exception:                  # one listener's failure must not fail the request
                    log.exception("room %s: on_close callback failed", room_id)


def check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidRequest(f"{name} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value
