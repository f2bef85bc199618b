"""A meeting room: its participants, their slots, the current quality tier, and fan-out."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from config import DEFAULTS, Settings
from meeting.agenda import AgendaClock
from meeting.errors import InvalidRequest, NotInRoom, RoomFull, UserAlreadyInRoom
from meeting.participant import DataChannel, Participant, RateLimiter
from meeting.quality import QualityPolicy, QualityTier
from meeting.traffic import Traffic
from wire import posedata
from wire import protocol as p

log = logging.getLogger(__name__)


@dataclass
class Attendance:
    """One stay of a participant in the room: from its data channel's attach to its leave (wall-clock times)."""
    user_id: str
    name: str
    is_host: bool
    joined_at: float
    left_at: float | None = None


MAX_ATTENDANCE = 1000                  # stays remembered per room (the oldest are forgotten)


@dataclass(frozen=True)
class RoomLimits:
    """A room's limits; the defaults are the settings' (config.Settings, where each is documented)."""
    outbox_limit: int = DEFAULTS.OUTBOX_LIMIT
    rate_burst: float = DEFAULTS.RATE_BURST
    chat_rate: float = DEFAULTS.CHAT_RATE
    chat_burst: float = DEFAULTS.CHAT_BURST
    resume_grace: float = DEFAULTS.RESUME_GRACE

    @classmethod
    def of(cls, s: Settings) -> dict:
        return {"outbox_limit": s.OUTBOX_LIMIT, "rate_burst": s.RATE_BURST, "chat_rate": s.CHAT_RATE,
                "chat_burst": s.CHAT_BURST, "resume_grace": s.RESUME_GRACE}


class RoomListener(Protocol):
    """Something that follows a room from inside it (the AI host): told of chat, microphone audio and
    head-count changes on the thread where they happen; it must not block."""

    def heard_chat(self, member: Participant, chat: p.Chat) -> None: ...

    def heard_audio(self, member: Participant, audio: p.Audio) -> None: ...

    def heard_audio_end(self, member: Participant) -> None: ...

    def members_changed(self, humans: int) -> None: ...


class RoomLink(Protocol):
    """The room's tie to the same room in other processes (connect.redisbus, with REDIS_URL): membership and slots
    agreed there, and what happens here told there. Called under the room's lock where membership changes; never
    blocks on the network for frames (they are queued)."""

    def reserve(self, user_id: str, display_name: str, is_host: bool, nonce: str, max_humans: int,
                avatar: str = "") -> int:
        """A slot for a new reservation (raises RoomFull, UserAlreadyInRoom)."""

    def claim(self, user_id: str, nonce: str) -> Participant | None:
        """A reservation with `nonce` made through another process (an HTTP join there, or a participant of a
        process that went away), now this process's; None when there is none."""

    def attached(self, member: Participant) -> None: ...

    def away(self, member: Participant) -> None: ...

    def left(self, member: Participant, announce: bool) -> None: ...

    def pose(self, slot: int, frame: bytes, key: bool) -> None: ...

    def ordered(self, slot: int, message: bytes) -> None: ...

    def chat(self, slot: int, text: str, ts_ms: int) -> None: ...

    def audio(self, slot: int, message: bytes) -> None: ...

    def stop_recording(self) -> None:
        """Ask the process where the room's recording runs to stop it."""


class JitsiRoom:
    """A room of up to `max_participants`. A participant is reserved by the HTTP join and connected when
    its data channel attaches; only connected participants count for the tier and receive frames."""

    def __init__(self, room_id: str, max_participants: int, policy: QualityPolicy, created_by: str,
                 limits: RoomLimits | None = None, clock=time.monotonic, traffic: Traffic | None = None):
        self.room_id, self.max_participants, self.created_by = room_id, max_participants, created_by
        self.policy, self.clock = policy, clock
        self.traffic = traffic or Traffic()
        self.limits = limits or RoomLimits()
        self.created_at = time.time()
        self.emptied_at: float | None = clock()
        self.tier: QualityTier = policy.tier_for(0)
        self._lock = threading.RLock()
        self._members: dict[str, Participant] = {}
        self._connected: tuple[Participant, ...] = ()     # copy-on-write: the fan-out reads it without a lock
        self.listeners: list[RoomListener] = []
        self.language = "en"
        self.agenda = AgendaClock()                        # set by the API; started by whoever keeps it
        self.attendance: list[Attendance] = []             # who was here and when, in the order they came
        self.wants_host = False                            # an AI host was asked for (it may run in another process)
        self.host_avatar = ""                              # the AI host's photo avatar (empty: its robot)
        self.link: RoomLink | None = None                  # the same room in other processes (Redis)
        self.recorder = None                               # a meeting.recording.Recorder while one runs here
        self.recording = p.Recording(False)                # what pages are told (it may run in another process)
        self._remote: dict[str, Participant] = {}          # connected through other processes, by user id …
        self._remote_slots: dict[int, Participant] = {}    # … and by slot

    # --- membership ---------------------------------------------------------------------------

    def reserve(self, user_id: str, display_name: str, is_host: bool = False, nonce: str | None = None,
                avatar: str = "") -> Participant:
        with self._lock:
            if user_id in self._members:
                raise UserAlreadyInRoom(f"user {user_id!r} is already in room {self.room_id!r}")
            nonce = nonce or secrets.token_urlsafe(12)
            if not is_host and self.humans >= self.max_participants:
                raise RoomFull(f"room {self.room_id!r} is full ({self.max_participants} participants)")
            if self.link is not None:
                slot = self.link.reserve(user_id, display_name, is_host, nonce or "", self.max_participants, avatar)
                moved = self._remote.pop(user_id, None) if is_host else None
                if moved is not None:            # an AI host starting here: its process died (it joins anew)
                    self._remote_slots.pop(moved.slot, None)
                    self._end_stay(moved)
            else:
                used = {m.slot for m in self._members.values()}
                slot = next(i for i in range(p.MAX_SLOT + 1) if i not in used)
            member = Participant(user_id, display_name, slot, nonce, self.clock(), is_host, avatar=avatar)
            member.outbox.max_ordered = self.limits.outbox_limit
            member.chat_limiter = RateLimiter(self.limits.chat_rate, self.limits.chat_burst, self.clock)
            self._members[user_id] = member
            if not is_host:
                self.emptied_at = None
            return member

    def place_for(self, user_id: str, nonce: str, display_name: str | None = None) -> Participant:
        """The reservation a join token stands for: the one made with `nonce`, or a new one when the user has
        none (a token minted by an application's backend, or one whose reservation lapsed)."""
        with self._lock:
            member = self._members.get(user_id)
            if member is None and self.link is not None:
                member = self._adopt(user_id, nonce)
            if member is None:
                return self.reserve(user_id, display_name or user_id, nonce=nonce)
            if member.nonce != nonce:
                if member.connected:
                    raise UserAlreadyInRoom(f"user {user_id!r} already has a channel open in room {self.room_id!r}")
                raise UserAlreadyInRoom(f"user {user_id!r} has joined room {self.room_id!r} with another token")
            if member.connected:                    # its resume token on a new channel: the old one is dead
                old = member.channel                # (a half-open connection the server has not noticed yet)
                if not self.detach(member):
                    raise UserAlreadyInRoom(f"user {user_id!r} already has a channel open in room {self.room_id!r}")
                old.close(p.CloseCode.DUPLICATE, "resumed on another connection")
            return member

    def _adopt(self, user_id: str, nonce: str) -> Participant | None:
        """A reservation made through another process, or the place of a participant of a process that went away,
        taken over here (under the lock). The others keep seeing it: its stay goes on."""
        member = self.link.claim(user_id, nonce)
        if member is None:
            return None
        member.reserved_at = self.clock()
        member.outbox.max_ordered = self.limits.outbox_limit
        member.chat_limiter = RateLimiter(self.limits.chat_rate, self.limits.chat_burst, self.clock)
        known = self._remote.pop(user_id, None)
        if known is not None:                        # it was connected elsewhere: it resumes here
            self._remote_slots.pop(known.slot, None)
            member.last_key, member.last_delta = known.last_key, known.last_delta
            member.away_since = self.clock()
        self._members[user_id] = member
        return member

    def attach(self, user_id: str, nonce: str, channel: DataChannel, resume: str = "",
               next_nonce: str | None = None) -> Participant:
        """Connect a reserved participant's data channel; greet it and tell the others. `resume` is the token it
        may come back with after a dropped connection (in its WELCOME), standing for `next_nonce`."""
        with self._lock:
            member = self._members.get(user_id)
            if member is None or member.nonce != nonce:
                raise NotInRoom(f"no reservation for {user_id!r} in room {self.room_id!r}")
            if member.connected:
                raise UserAlreadyInRoom(f"user {user_id!r} already has a channel open")
            member.jtis.add(nonce)
            if next_nonce is not None:
                member.nonce = next_nonce
                member.jtis.add(next_nonce)
            if member.away:
                self._resume(member, channel, resume)
                if self.link is not None:
                    self.link.attached(member)
                return member
            channel.bind(member.outbox)
            member.channel = channel
            member.limiter = RateLimiter(self.tier.fps, self.limits.rate_burst, self.clock)
            others = self._connected
            self._connected = others + (member,)
            member.send(p.encode(p.Welcome(member.slot, self.room_id, resume)))
            self._send_here(member, p.encode(p.PresenceMsg(p.Presence.JOINED, (self._member_info(member),))))
            self._retier(force_to=member)
            self._record_stay(member)
            self._catch_up(member)
            if self.link is not None:
                self.link.attached(member)
        log.info("room %s: %s connected (slot %d, %d connected)", self.room_id, user_id, member.slot,
                 len(self._connected))
        self._members_changed()
        return member

    def _catch_up(self, member: Participant) -> None:
        """Who is here and everyone's latest face, for a participant that just (re)connected."""
        member.send(p.encode(p.PresenceMsg(p.Presence.SNAPSHOT, self.members())))
        if self.recording.on:
            member.send(p.encode(self.recording))
        for other in self._connected + tuple(self._remote.values()):
            if other is member:
                continue
            if other.last_key is not None:
                member.send_pose(other.slot, other.last_key, True)
            if other.last_delta is not None:
                member.send_pose(other.slot, other.last_delta, False)

    def _resume(self, member: Participant, channel: DataChannel, resume: str) -> Participant:
        """Back on a new channel after a drop (under the lock): the others saw nothing; it gets its WELCOME, the
        tier, the snapshot, everyone's latest pose, then the chat it missed (not stale audio)."""
        missed = [m for m in member.outbox.take_ordered() if len(m) > 2 and m[2] == p.MsgType.CHAT]
        member.away_since = None
        channel.bind(member.outbox)
        member.channel = channel
        if member not in self._connected:         # taken over from another process (Redis): it fans out here now
            self._connected = self._connected + (member,)
            member.limiter = RateLimiter(self.tier.fps, self.limits.rate_burst, self.clock)
        member.send(p.encode(p.Welcome(member.slot, self.room_id, resume)))
        tier = self.tier
        member.send(p.encode(p.Tier(tier.index, tier.fps, tier.bits, self.connected_count)))
        self._catch_up(member)
        for message in missed:
            member.send(message)
        channel.notify()                # what was queued while it was away woke nobody: the outbox was not empty
        log.info("room %s: %s resumed (slot %d)", self.room_id, member.user_id, member.slot)
        return member

    def detach(self, member: Participant) -> bool:
        """Its channel dropped without a close: keep its place and slot (the others see nothing) for the resume
        grace, until it resumes or `expire_away` ends it. False when there is no grace or it is not here."""
        grace = self.limits.resume_grace
        with self._lock:
            if grace <= 0 or self._members.get(member.user_id) is not member or member not in self._connected \
                    or member.away:
                return False
            member.channel.bind(None)           # the outbox waits for the channel it resumes on, not this one
            member.channel = None
            member.away_since = self.clock()
            if self.link is not None:
                self.link.away(member)
        log.info("room %s: %s dropped, its place is kept for %.0f s", self.room_id, member.user_id, grace)
        self.hear_audio_end(member)
        timer = threading.Timer(grace + 0.05, self.expire_away, (member, grace))
        timer.daemon = True
        timer.start()
        return True

    def expire_away(self, member: Participant, grace: float) -> bool:
        """End a dropped participant's stay once `grace` seconds passed without a resume (the others see it leave)."""
        with self._lock:
            since = member.away_since
            if since is None or self._members.get(member.user_id) is not member or self.clock() - since < grace:
                return False
        try:
            self.remove(member.user_id, only=member)
        except NotInRoom:
            return False
        return True

    def remove(self, user_id: str, only: Participant | None = None) -> Participant:
        """Take a participant out; with `only`, just that one (not a newer reservation of the same user id)."""
        with self._lock:
            member = self._members.get(user_id)
            if member is None or (only is not None and member is not only):
                raise NotInRoom(f"user {user_id!r} is not in room {self.room_id!r}")
            del self._members[user_id]
            self.traffic.add("out.messages", member.outbox.sent)        # live outboxes are counted where they are
            self.traffic.add("drop.stale_pose", member.outbox.dropped_poses)
            was_connected = member in self._connected
            if was_connected:
                self._connected = tuple(m for m in self._connected if m is not member)
                self._send_here(None, p.encode(p.PresenceMsg(p.Presence.LEFT, (self._member_info(member),))))
                self._retier()
            member.channel, member.away_since = None, None
            if was_connected:
                self._end_stay(member)
            if self.link is not None:
                self.link.left(member, announce=was_connected)
            if not self.humans:
                self.emptied_at = self.clock()
        log.info("room %s: %s left (%d connected)", self.room_id, user_id, len(self._connected))
        if was_connected:
            self.hear_audio_end(member)           # their microphone ends with them (what they were saying counts)
        self._members_changed()
        return member

    def _record_stay(self, member: Participant) -> None:
        self.attendance.append(Attendance(member.user_id, member.display_name, member.is_host, time.time()))
        if len(self.attendance) > MAX_ATTENDANCE:
            del self.attendance[0]

    def _end_stay(self, member: Participant) -> None:
        for stay in reversed(self.attendance):
            if stay.user_id == member.user_id and stay.left_at is None:
                stay.left_at = time.time()
                return

    @property
    def started_at(self) -> float | None:
        """When the first person (not the host) arrived, wall-clock; None before anyone did."""
        return next((s.joined_at for s in self.attendance if not s.is_host), None)

    def present(self) -> list[Participant]:
        """The people connected now (not the host), here and through other processes."""
        return [m for m in self._online() if not m.is_host]

    def _online(self) -> tuple[Participant, ...]:
        return self._connected + tuple(self._remote.values()) if self._remote else self._connected

    @property
    def connected_humans(self) -> int:
        """Connected participants that are people (read it where it is used: a count passed on can be stale)."""
        return sum(not m.is_host for m in self._online())

    def _members_changed(self) -> None:
        humans = self.connected_humans
        for listener in self.listeners:
            listener.members_changed(humans)

    def hear_audio(self, sender: Participant, audio: p.Audio) -> None:
        """A participant's microphone: for the room's listeners (the AI host, wherever it runs) only."""
        for listener in self.listeners:
            listener.heard_audio(sender, audio)
        if self.link is not None and not sender.remote:
            self.link.audio(sender.slot, p.encode(audio))

    def hear_audio_end(self, sender: Participant) -> None:
        for listener in self.listeners:
            listener.heard_audio_end(sender)
        if self.link is not None and not sender.remote:
            self.link.audio(sender.slot, p.encode(p.AudioStop()))

    def get(self, user_id: str) -> Participant | None:
        return self._members.get(user_id)

    def expire_reservations(self, ttl: float) -> list[str]:
        """Drop reservations whose data channel never attached within `ttl` seconds."""
        now = self.clock()
        with self._lock:
            stale = [m.user_id for m in self._members.values()
                     if not m.connected and not m.away and now - m.reserved_at > ttl]
        for user_id in stale:
            try:
                self.remove(user_id)
            except NotInRoom:
                pass
        return stale

    @property
    def size(self) -> int:
        return len(self._members)

    @property
    def humans(self) -> int:
        """Participants that are people (reserved or connected, here or elsewhere): the AI host takes no place."""
        return sum(not m.is_host for m in self._members.values()) + sum(not m.is_host for m in self._remote.values())

    @property
    def connected_count(self) -> int:
        return len(self._connected) + len(self._remote)

    def members(self) -> tuple[p.Member, ...]:
        return tuple(self._member_info(m) for m in self._online())

    def participants(self) -> list[Participant]:
        """Everyone here (reserved or connected) and everyone connected through other processes."""
        with self._lock:
            return list(self._members.values()) + list(self._remote.values())

    def local_participants(self) -> list[Participant]:
        with self._lock:
            return list(self._members.values())

    @staticmethod
    def _member_info(m: Participant) -> p.Member:
        return p.Member(m.slot, m.user_id, m.display_name, m.is_host, m.avatar)

    def _retier(self, force_to: Participant | None = None) -> None:
        count = self.connected_count
        tier = self.policy.tier_for(count, self.tier)
        changed = tier != self.tier
        self.tier = tier
        message = p.encode(p.Tier(tier.index, tier.fps, tier.bits, count))
        for member in self._connected:
            if changed:
                if member.limiter is not None:
                    member.limiter.set_rate(tier.fps)
                member.send(message)
            elif member is force_to:
                member.send(message)
        if changed:
            log.info("room %s: tier %d (%d fps, %d bits) for %d connected", self.room_id, tier.index, tier.fps,
                     tier.bits, count)

    # --- fan-out ------------------------------------------------------------------------------

    def relay_pose(self, sender: Participant, payload: bytes) -> bool:
        """Send a validated pose payload to every other connected participant. Frames above the tier's
        rate are dropped (False), not queued. Runs on the thread that read the frame and never touches a socket."""
        if sender.limiter is not None and not sender.limiter.allow():
            self.traffic.add("drop.pose_rate")
            return False
        key = bool(payload[0] & posedata.KEY_FLAG)
        frame = p.relay_pose(payload, sender.slot)
        if key:
            sender.last_key, sender.last_delta = frame, None
        else:
            sender.last_delta = frame
        for member in self._connected:
            if member is not sender:
                member.send_pose(sender.slot, frame, key)
        if self.link is not None:
            self.link.pose(sender.slot, frame, key)
        if self.recorder is not None:
            self.recorder.record(frame)
        return True

    def broadcast(self, sender: Participant | None, message: bytes) -> None:
        """An ordered message (viseme, the host's voice and status …) to everyone connected but the sender."""
        self._send_here(sender, message)
        if self.link is not None:
            self.link.ordered(sender.slot if sender else -1, message)

    def _send_here(self, sender: Participant | None, message: bytes) -> None:
        for member in self._connected:
            if member is not sender:
                member.send(message)
        if self.recorder is not None:
            self.recorder.record(message)

    def post_chat(self, sender: Participant, text: str) -> p.Chat | None:
        """Chat to everyone else; None (nothing sent) when the sender is over its chat rate."""
        if sender.chat_limiter is not None and not sender.chat_limiter.allow():
            self.traffic.add("drop.chat_rate")
            return None
        chat = p.Chat(text, sender.slot, int(time.time() * 1000))
        self._send_here(sender, p.encode(chat))
        if self.link is not None:
            self.link.chat(sender.slot, text, chat.ts_ms)
        for listener in self.listeners:
            listener.heard_chat(sender, chat)
        return chat

    # --- the same room in other processes (told by self.link, on its thread) -----------------

    def remote_attached(self, member: Participant) -> None:
        """A participant connected through another process (or moved there: the others see nothing)."""
        with self._lock:
            known = self._remote.get(member.user_id)
            if known is not None:
                known.worker = member.worker
                return
            local = self._members.get(member.user_id)
            known_here = local is not None and local in self._connected
            if local is not None:             # reserved or connected here before: that copy is stale now
                self._drop_here(local)
            self._add_remote(member, announce=not known_here)
        self._members_changed()

    def _add_remote(self, member: Participant, announce: bool) -> None:
        self._remote[member.user_id] = member
        self._remote_slots[member.slot] = member
        if announce:
            joined = p.encode(p.PresenceMsg(p.Presence.JOINED, (self._member_info(member),)))
            self._send_here(None, joined)
            self._record_stay(member)
            if not member.is_host:
                self.emptied_at = None
        self._retier()

    def _drop_here(self, member: Participant) -> None:
        """Forget this process's copy of a participant that now lives in another process (no LEFT: it stays)."""
        if self._members.get(member.user_id) is member:
            del self._members[member.user_id]
        if member in self._connected:
            self._connected = tuple(m for m in self._connected if m is not member)
        channel, member.channel, member.away_since = member.channel, None, None
        if channel is not None:
            channel.bind(None)
            channel.close(p.CloseCode.DUPLICATE, "resumed on another connection")

    def remote_moved(self, user_id: str, worker: str) -> None:
        """Another process took over a participant of this one (it resumed there): drop the copy here."""
        with self._lock:
            local = self._members.get(user_id)
            if local is None:
                return
            was_online = local in self._connected
            self._drop_here(local)
            if was_online:
                local.worker = worker
                self._add_remote(local, announce=False)
        log.info("room %s: %s moved to %s", self.room_id, user_id, worker)

    def remote_left(self, user_id: str) -> None:
        with self._lock:
            member = self._remote.pop(user_id, None)
            if member is None:
                return
            self._remote_slots.pop(member.slot, None)
            self._send_here(None, p.encode(p.PresenceMsg(p.Presence.LEFT, (self._member_info(member),))))
            self._retier()
            self._end_stay(member)
            if not self.humans:
                self.emptied_at = self.clock()
        for listener in self.listeners:
            listener.heard_audio_end(member)
        self._members_changed()

    def remote_pose(self, slot: int, frame: bytes, key: bool) -> None:
        sender = self._remote_slots.get(slot)
        if sender is None:
            return
        if key:
            sender.last_key, sender.last_delta = frame, None
        else:
            sender.last_delta = frame
        for member in self._connected:
            member.send_pose(slot, frame, key)
        if self.recorder is not None:
            self.recorder.record(frame)

    def remote_ordered(self, message: bytes) -> None:
        if len(message) > 2 and message[2] == p.MsgType.RECORDING:
            self.recording = p.decode_server(message)
        self._send_here(None, message)

    def remote_chat(self, slot: int, text: str, ts_ms: int) -> None:
        sender = self._remote_slots.get(slot)
        if sender is None:
            return
        chat = p.Chat(text, slot, ts_ms)
        self._send_here(None, p.encode(chat))
        for listener in self.listeners:
            listener.heard_chat(sender, chat)

    def remote_audio(self, slot: int, message: p.Audio | p.AudioStop) -> None:
        sender = self._remote_slots.get(slot)
        if sender is None or not self.listeners:
            return
        for listener in self.listeners:
            if isinstance(message, p.Audio):
                listener.heard_audio(sender, message)
            else:
                listener.heard_audio_end(sender)

    # --- recording ------------------------------------------------------------------------------

    def start_recording(self, store, by: str) -> p.Recording:
        """Record what the participants receive from now on (meeting.recording); everyone is told."""
        with self._lock:
            if self.recording.on:
                raise InvalidRequest("the meeting is being recorded already")
            recorder = store.start(self.room_id, self.members(), by)
            self.recorder = recorder
            self.recording = p.Recording(True, recorder.started_ms, by)
            self.broadcast(None, p.encode(self.recording))
        log.info("room %s: recording %s started by %s", self.room_id, recorder.id, by)
        return self.recording

    def stop_recording(self):
        """Stop the recording running here (its RecordingInfo), or, when it runs in another process, ask that
        one to stop it (None)."""
        with self._lock:
            recorder, self.recorder = self.recorder, None
            if recorder is None and not self.recording.on:
                raise InvalidRequest("the meeting is not being recorded")
            if recorder is None:
                self.link.stop_recording()
                return None
            self.recording = p.Recording(False)
            self.broadcast(None, p.encode(self.recording))
        return recorder.close()

    def remote_stop_recording(self) -> None:
        if self.recorder is not None:
            self.stop_recording()

    def latest_poses(self) -> list[tuple[int, bytes, bool]]:
        """The latest key frame and delta of everyone connected here (for a process that just subscribed)."""
        out = []
        for member in self._connected:
            if member.last_key is not None:
                out.append((member.slot, member.last_key, True))
            if member.last_delta is not None:
                out.append((member.slot, member.last_delta, False))
        return out

    def remote_members(self) -> list[Participant]:
        return list(self._remote.values())
