"""Replaying a recording into a room: its participants come in again as "<name> (replay)" (each in a free slot
of the room) at the moments they came, and their faces move, the host speaks and the chat is said again at the
times they were, as the room's participants received them the first time."""
from __future__ import annotations

import logging
import pathlib
import threading
import time
from dataclasses import replace

from meeting.errors import MeetingError, NotInRoom, RoomFull
from meeting.participant import Participant
from meeting.recording import read
from wire import protocol as p

log = logging.getLogger(__name__)


class ReplayBusy(MeetingError):
    code = "replay_busy"


class ReplayChannel:
    """A replayed participant's data channel: it hears nothing (what is sent to it is dropped)."""
    transport = "replay"

    def __init__(self):
        self.outbox = None

    def bind(self, outbox) -> None:
        self.outbox = outbox

    def notify(self) -> None:
        if self.outbox is not None:
            self.outbox.drain()

    def close(self, code: int, reason: str) -> None:
        pass


class Replayer:
    def __init__(self, room, path: pathlib.Path, registry: dict):
        self.room, self.path, self.registry = room, path, registry
        self.header, self.records = read(path)
        self.id = self.header["id"]
        self.cast: dict[int, Participant] = {}          # the recording's slot -> its stand-in in this room
        self.names = {m[0]: (m[1], m[2], bool(m[3])) for m in self.header["members"]}
        self._stop = threading.Event()
        self.started_at = time.time()
        self.done = False
        self.sent = 0

    @classmethod
    def start(cls, room, path: pathlib.Path, registry: dict) -> Replayer:
        replayer = cls(room, path, registry)
        if replayer.id in registry and not registry[replayer.id].done:
            raise ReplayBusy(f"recording {replayer.id!r} is being replayed already")
        registry[replayer.id] = replayer
        threading.Thread(target=replayer._run, name=f"replay-{replayer.id}", daemon=True).start()
        return replayer

    def stop(self) -> None:
        self._stop.set()

    def as_json(self) -> dict:
        return {"id": self.id, "room_id": self.room.room_id, "started_at": self.started_at, "done": self.done,
                "participants": len(self.cast), "messages": self.sent}

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for slot in list(self.names):
                self._enter(slot)
            for t_ms, message in self.records:
                wait = start + t_ms / 1000 - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                self._play(message)
        except Exception:
            log.exception("replay %s into room %s failed", self.id, self.room.room_id)
        finally:
            for slot in list(self.cast):
                self._leave(slot)
            self.done = True
            log.info("replay %s into room %s: %d messages", self.id, self.room.room_id, self.sent)

    def _enter(self, slot: int, member: p.Member | None = None) -> Participant | None:
        if slot in self.cast:
            return self.cast[slot]
        user_id, name, host = (member.user_id, member.name, member.host) if member else self.names.get(
            slot, (f"slot{slot}", f"slot {slot}", False))
        try:
            stand_in = self.room.reserve(f"replay-{user_id}"[:64], f"{name} (replay)"[:64], is_host=False)
            stand_in = self.room.attach(stand_in.user_id, stand_in.nonce, ReplayChannel())
        except (RoomFull, MeetingError) as exc:
            log.warning("replay %s: %s cannot come in: %s", self.id, name, exc)
            return None
        stand_in.limiter = stand_in.chat_limiter = None        # it does what the recording did, at its pace
        self.cast[slot] = stand_in
        return stand_in

    def _leave(self, slot: int) -> None:
        stand_in = self.cast.pop(slot, None)
        if stand_in is not None:
            try:
                self.room.remove(stand_in.user_id, only=stand_in)
            except NotInRoom:
                pass

    def _play(self, message: bytes) -> None:
        try:
            msg = p.decode_server(message)
        except p.ProtocolError:
            return
        self.sent += 1
        if isinstance(msg, p.PresenceMsg):
            for member in msg.members:
                if msg.event == p.Presence.JOINED:
                    self.names[member.slot] = (member.user_id, member.name, member.host)
                    self._enter(member.slot, member)
                elif msg.event == p.Presence.LEFT:
                    self._leave(member.slot)
            return
        slot = getattr(msg, "slot", None)
        stand_in = self.cast.get(slot) if slot is not None else None
        if stand_in is None:
            return
        if isinstance(msg, p.Pose):
            self.room.relay_pose(stand_in, msg.data)
        elif isinstance(msg, p.Chat):
            self.room.post_chat(stand_in, msg.text)
        elif isinstance(msg, (p.Audio, p.AudioStop, p.Viseme)):
            self.room.broadcast(stand_in, p.encode(replace(msg, slot=stand_in.slot)))
