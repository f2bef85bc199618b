"""The meeting manager: creates, finds and closes rooms, and joins and removes participants."""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

from config import DEFAULTS, Settings
from meeting.agenda import AgendaClock, parse_agenda
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
    """The rooms of this process. With a `bus` (connect.redisbus.RedisBus) rooms are kept in Redis: one created
    through another process is opened here when someone asks for it, and its members and frames are shared."""

    def __init__(self, settings: MeetingSettings | None = None, clock=time.monotonic, bus=None):
        self.settings = settings or MeetingSettings()
        self.bus = bus
        self._opening = threading.Lock()
        self.on_open: list = []              # callables(room) told when a room is opened here (created or loaded)
        self.policy = QualityPolicy.parse(self.settings.tiers, self.settings.tier_hysteresis)
        self.clock = clock
        self._rooms: dict[str, JitsiRoom] = {}
        self._lock = threading.Lock()
        self.on_close: list = []             # callables(room_id) told when a room closes
        self.traffic = Traffic()             # what every room of this manager carried (monitor.metrics reads it)

    def create_room(self, created_by: str, room_id: str | None = None, max_participants: int | None = None, *,
                    language: str = "en", agenda: list | None = None, with_host: bool = False,
                    host_avatar: str = "") -> JitsiRoom:
        check_id("user_id", created_by)
        if room_id is None:
            room_id = secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")
        check_id("room_id", room_id)
        cap = self.settings.server_max_participants
        size = self.settings.default_max_participants if max_participants is None else max_participants
        if not 2 <= size <= cap:
            raise InvalidRequest(f"max_participants must be between 2 and {cap}")
        room = JitsiRoom(room_id, size, self.policy, created_by, self.settings, self.clock, self.traffic)
        room.language, room.agenda, room.wants_host = language, AgendaClock(agenda), with_host
        room.host_avatar = host_avatar
        with self._opening:
            with self._lock:
                closed = self._sweep_locked()
                taken = room_id in self._rooms
            self._closed(closed)
            if not taken and self.bus is not None:
                taken = not self.bus.create_room(room_id, _meta(room))
                if not taken:
                    self.bus.open(room)
            if taken:
                raise RoomExists(f"room {room_id!r} already exists")
            with self._lock:
                self._rooms[room_id] = room
        log.info("room %s created by %s (max %d)", room_id, created_by, size)
        self._opened(room)
        return room

    def _load(self, room_id: str) -> JitsiRoom | None:
        """A room kept in Redis, opened in this process (once)."""
        with self._opening:
            room = self._rooms.get(room_id)
            if room is not None:
                return room
            meta = self.bus.load_room(room_id)
            if meta is None:
                return None
            room = JitsiRoom(room_id, int(meta["max"]), self.policy, meta["created_by"], self.settings, self.clock,
                             self.traffic)
            room.created_at, room.language = float(meta["created_at"]), meta["language"]
            room.agenda, room.wants_host = AgendaClock(parse_agenda(json.loads(meta["agenda"]))), meta["host"] == "1"
            room.host_avatar = meta.get("host_avatar", "")
            self.bus.open(room)
            with self._lock:
                self._rooms[room_id] = room
        log.info("room %s opened here (created by %s through another process)", room_id, room.created_by)
        self._opened(room)
        return room

    def _opened(self, room: JitsiRoom) -> None:
        for callback in self.on_open:
            callback(room)

    def get_room(self, room_id: str) -> JitsiRoom:
        room = self._rooms.get(room_id)
        if room is None and self.bus is not None:
            room = self._load(room_id)
        if room is None:
            raise RoomNotFound(f"room {room_id!r} does not exist")
        return room

    def join(self, room_id: str, user_id: str, display_name: str | None = None,
             nonce: str | None = None, avatar: str = "") -> tuple[JitsiRoom, Participant]:
        check_id("user_id", user_id)
        room = self.get_room(room_id)
        room.expire_reservations(self.settings.reservation_ttl)
        return room, room.reserve(user_id, display_name or user_id, nonce=nonce, avatar=avatar)

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
            if room.recorder is not None and (room.recorder.full or not room.connected_humans):
                room.stop_recording()                     # at its size limit, or nobody is left to record
            if room.emptied_at is not None and now - room.emptied_at > self.settings.empty_room_ttl:
                del self._rooms[room.room_id]
                log.info("room %s closed: empty for %.0f s", room.room_id, now - room.emptied_at)
                closed.append(room.room_id)
        return closed

    def _closed(self, room_ids: list[str]) -> None:
        for room_id in room_ids:
            if self.bus is not None:
                self.bus.release(room_id)
                self.bus.close_room(room_id)
            for callback in self.on_close:
                try:
                    callback(room_id)
                except Exception:                  # one listener's failure must not fail the request
                    log.exception("room %s: on_close callback failed", room_id)


def _meta(room: JitsiRoom) -> dict:
    return {"created_by": room.created_by, "created_at": repr(room.created_at), "max": room.max_participants,
            "language": room.language, "host": "1" if room.wants_host else "0", "host_avatar": room.host_avatar,
            "agenda": json.dumps([{"title": i.title, "minutes": i.minutes} for i in room.agenda.items])}


def check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidRequest(f"{name} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value
