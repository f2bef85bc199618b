"""The backplane on Redis (AVATAR_REDIS_URL): one room across several processes.

What lives in Redis (keys under REDIS_PREFIX):
  <p>:room:<id>            hash: the room's settings (created_by, created_at, max, language, agenda, host)
  <p>:room:<id>:members    hash: user id -> msgpack [slot, name, is_host, nonce, worker, state, since, jtis]
                           (state: "r" reserved, "c" connected, "a" away); slots and places are agreed here
  <p>:room:<id>:host       the AI host's lease: the id of the process that runs it (PX, renewed)
  <p>:worker:<id>          a process's heartbeat (PX: 3 heartbeats)
  <p>:jti:<jti>            a spent join token, until it expires
What crosses between processes: one pub/sub channel per room (<p>:ch:<id>), each message a batch of events from
one process: its id, a newline, then msgpack [[kind, …], …]; only processes with the room open subscribe.

Three threads: the publisher (batches what the rooms queue, one PUBLISH per room per pass, so a busy room makes
bigger messages rather than more of them), the listener (one pub/sub connection; resubscribes everything after
a Redis restart and says so in the log and in `stats`), and the ticker (heartbeat, dead processes, host leases).
Chat, presence and the host's voice are numbered per sender and re-sent for REDIS_RETRY seconds to a process that
did not receive them (PUBLISH counts the receivers), so a Redis restart loses none; pose frames are latest-wins
and never re-sent.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import msgpack
import redis

from meeting.errors import MeetingError, RoomFull, UserAlreadyInRoom
from meeting.participant import Participant
from wire import protocol as p

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
ORDERED = "OCJLTR"                 # event kinds that are numbered, re-sent when missed and received once
SEEN = 4096                        # ordered numbers remembered per sending process and room (duplicates)

# KEYS: members hash. ARGV: user_id, packed record, max humans, is_host, now, reservation ttl.
# Returns the slot, -1 (already in the room) or -2 (full). A host takes over an earlier host's place (its process
# died); reservations that were never used and are older than the ttl are forgotten.
_RESERVE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and ARGV[4] ~= '1' then return -1 end
local rec = cmsgpack.unpack(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local used, humans = {}, 0
for i = 1, #all, 2 do
  local other = cmsgpack.unpack(all[i + 1])
  if all[i] ~= ARGV[1] then
    if other[6] == 'r' and tonumber(ARGV[5]) - other[7] > tonumber(ARGV[6]) then
      redis.call('HDEL', KEYS[1], all[i])
    else
      used[other[1]] = true
      if other[3] == 0 then humans = humans + 1 end
    end
  end
end
if ARGV[4] ~= '1' and humans >= tonumber(ARGV[3]) then return -2 end
local slot = nil
if cur then slot = cmsgpack.unpack(cur)[1] end
if slot == nil or used[slot] then
  slot = 0
  while used[slot] do slot = slot + 1 end
end
if slot > 16 then return -2 end
rec[1] = slot
redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(rec))
return slot
"""
# KEYS: members hash. ARGV: user_id, nonce, worker. The record (taken by this worker) when its nonce matches.
_CLAIM = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return nil end
local rec = cmsgpack.unpack(cur)
if rec[4] ~= ARGV[2] then return nil end
local before = rec[5]
rec[5] = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(rec))
return {before, cur}
"""
# KEYS: members hash. ARGV: user_id, worker. Deletes the record if that worker still has it (1), else 0.
_DROP = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if cmsgpack.unpack(cur)[5] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""
# KEYS: lease. ARGV: worker, ms. Takes a free lease or renews one's own: 1 when held.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: room, members, lease. Deletes the room when nobody is in it (1), else 0.
_CLOSE = """
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""


class BackplaneDown(MeetingError):
    """Redis does not answer: the request cannot be served now (HTTP 503)."""
    code = "backplane_unavailable"


@dataclass
class BusStats:
    connected: bool = False               # the listener holds its subscriptions
    resubscriptions: int = 0              # times it had to subscribe again (Redis restarted or the link broke)
    rtt_ms: float = 0.0                   # the last heartbeat's round trip
    resent: int = 0                       # ordered events re-sent to a process that missed them
    lost: int = 0                         # ordered events given up after REDIS_RETRY


@dataclass
class _Outgoing:
    events: list = field(default_factory=list)       # this pass's events
    held: deque = field(default_factory=deque)       # ordered events not yet received by every process
    held_since: float = 0.0
    retry_at: float = 0.0


class RedisBus:
    def __init__(self, url: str, prefix: str = "avatar", heartbeat: float = 1.0, retry: float = 3.0,
                 reservation_ttl: float = 60.0, resume_grace: float = 15.0, batch_ms: float = 1.0):
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.url, self.prefix, self.heartbeat, self.retry, self.batch = url, prefix, heartbeat, retry, batch_ms / 1000
        self.reservation_ttl, self.resume_grace = reservation_ttl, resume_grace
        self.r = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._reserve = self.r.register_script(_RESERVE)
        self._claim = self.r.register_script(_CLAIM)
        self._drop = self.r.register_script(_DROP)
        self._lease = self.r.register_script(_LEASE)
        self._close = self.r.register_script(_CLOSE)
        self.stats = BusStats()
        self._rooms: dict[str, object] = {}                # room id -> JitsiRoom (subscribed)
        self._subscribed: dict[str, threading.Event] = {}
        self._unsubscribe: set[str] = set()
        self._out: dict[str, _Outgoing] = {}
        self._seq = 0
        self._seen: dict[tuple[str, str], tuple[set, deque]] = {}   # (room, origin) -> ordered numbers received
        self._origin = self.worker.encode() + b"\n"        # each batch starts with it: a process skips its own
        self._cond = threading.Condition()
        self._waiting = False                              # the publisher sleeps: the next event wakes it
        self._stop = threading.Event()
        self._dead: dict[str, float] = {}                  # workers found dead -> when
        self.leases: dict[str, object] = {}                # room id -> what starts its AI host here (no arguments)
        self._held_leases: set[str] = set()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> RedisBus:
        if not self._threads:
            for target, name in ((self._publish_loop, "redis-pub"), (self._listen_loop, "redis-sub"),
                                 (self._tick_loop, "redis-tick")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def ping(self) -> float:
        """The round trip to Redis in ms (raises BackplaneDown)."""
        start = time.perf_counter()
        self._call(self.r.ping)
        return (time.perf_counter() - start) * 1000

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except REDIS_ERRORS as exc:
            raise BackplaneDown(f"the backplane (Redis) does not answer: {exc}") from None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix,) + parts)

    # --- rooms ----------------------------------------------------------------------------

    def create_room(self, room_id: str, meta: dict) -> bool:
        """Store a new room's settings; False when a room with that id exists."""
        key = self.key("room", room_id)
        if not self._call(self.r.hsetnx, key, "created_at", meta["created_at"]):
            return False                                 # (a room is whole once it has "max": see load_room)
        self._call(self.r.hset, key, mapping={k: v for k, v in meta.items() if k != "created_at"})
        return True

    def load_room(self, room_id: str) -> dict | None:
        meta = self._call(self.r.hgetall, self.key("room", room_id))
        return {k.decode(): v.decode() for k, v in meta.items()} if meta and b"max" in meta else None

    def close_room(self, room_id: str) -> bool:
        """Forget the room in Redis when nobody is in it (any process may close it)."""
        try:
            return bool(self._close(keys=[self.key("room", room_id), self.key("room", room_id, "members"),
                                          self.key("room", room_id, "host")]))
        except REDIS_ERRORS:
            return False

    def open(self, room) -> None:
        """Subscribe to a room's channel (waits for Redis to confirm, so nothing sent after is missed), then learn
        who is connected through other processes, and ask them for their latest poses."""
        room_id = room.room_id
        with self._cond:
            self._rooms[room_id] = room
            self._unsubscribe.discard(room_id)
            ready = self._subscribed.setdefault(room_id, threading.Event())
        room.link = RoomLink(self, room)
        if not ready.wait(3.0):
            raise BackplaneDown("the backplane (Redis) did not confirm the room's subscription")
        records = self._call(self.r.hgetall, self.key("room", room_id, "members"))
        for user_id, packed in records.items():
            rec = msgpack.unpackb(packed)
            if rec[4] != self.worker and rec[5] in ("c", "a"):
                room.remote_attached(_participant(user_id.decode(), rec))
        self._queue(room_id, ["S"])

    def release(self, room_id: str) -> None:
        with self._cond:
            self._rooms.pop(room_id, None)
            self._subscribed.pop(room_id, None)
            self._unsubscribe.add(room_id)
            self.leases.pop(room_id, None)
            self._held_leases.discard(room_id)
            for key in [k for k in list(self._seen) if k[0] == room_id]:     # (the listener adds keys meanwhile)
                self._seen.pop(key, None)

    # --- members --------------------------------------------------------------------------

    def members_key(self, room_id: str) -> str:
        return self.key("room", room_id, "members")

    def record(self, member: Participant, state: str) -> bytes:
        return msgpack.packb([member.slot, member.display_name, int(member.is_host), member.nonce, self.worker, state,
                              time.time(), sorted(member.jtis)[-8:], member.avatar])

    # --- tokens (connect.tokens.SpentTokens, shared by every process) ----------------------

    def add(self, jti: str, until: float) -> bool:
        """Mark a join token used until it expires; False when it already was."""
        at = max(int(until) + 1, int(time.time()) + 2)
        return bool(self._call(self.r.set, self.key("jti", jti), 1, nx=True, exat=at))

    def seen(self, jti: str) -> bool:
        return bool(self._call(self.r.exists, self.key("jti", jti)))

    # --- the AI host's lease --------------------------------------------------------------

    def want_host(self, room_id: str, on_lease) -> bool:
        """Run `on_lease()` in the process that gets the room's host lease (now, or when its holder dies).
        True when this process holds it now."""
        with self._cond:
            self.leases[room_id] = on_lease
        return self._take_lease(room_id)

    def _take_lease(self, room_id: str) -> bool:
        try:
            held = bool(self._lease(keys=[self.key("room", room_id, "host")],
                                    args=[self.worker, int(self.heartbeat * 3000)]))
        except REDIS_ERRORS:
            return room_id in self._held_leases
        if held:
            self._held_leases.add(room_id)
        return held

    # --- publishing -----------------------------------------------------------------------

    def _queue(self, room_id: str, event: list, ordered: bool = False) -> None:
        with self._cond:
            out = self._out.get(room_id)
            if out is None:
                out = self._out[room_id] = _Outgoing()
            if ordered:
                self._seq += 1
                event = [event[0], self._seq] + event[1:]
                if out.held:                  # behind what some process has not received yet: keep the order
                    out.held.append(event)
                    return
            out.events.append(event)
            if self._waiting:
                self._waiting = False
                self._cond.notify()

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not any(o.events for o in self._out.values()) \
                        and not self._retry_due():
                    self._waiting = True
                    self._cond.wait(self._retry_wait())
                self._waiting = False
            if self.batch:                    # let the frames of the same moment (a tick) join this batch
                self._stop.wait(self.batch)
            with self._cond:
                batches, now = {}, time.monotonic()
                for room_id, out in self._out.items():
                    resend = list(out.held) if out.held and now >= out.retry_at else []
                    if resend or out.events:
                        batches[room_id] = (resend + out.events, len(resend))
                        out.events = []
                for room_id in [r for r, o in self._out.items() if not o.events and not o.held]:
                    del self._out[room_id]
            if batches:
                self._publish(batches)

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(o.held and now >= o.retry_at for o in self._out.values())

    def _retry_wait(self) -> float | None:
        due = [o.retry_at for o in self._out.values() if o.held]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _publish(self, batches: dict[str, tuple[list, int]]) -> None:
        """One PUBLISH per room. Ordered events that fewer processes received than have the room's participants
        are held (new ordered events queue behind them) and sent again until they are, for REDIS_RETRY seconds."""
        pipe = self.r.pipeline(transaction=False)
        for room_id, (events, _) in batches.items():
            pipe.publish(self.key("ch", room_id), self._origin + msgpack.packb(events))
        try:
            received = pipe.execute()
        except REDIS_ERRORS:
            received = [None] * len(batches)
        now = time.monotonic()
        with self._cond:
            for (room_id, (events, resent)), count in zip(batches.items(), received):
                self.stats.resent += resent
                out = self._out.setdefault(room_id, _Outgoing())
                if count is not None and count >= self._expected(room_id):
                    for _ in range(resent):
                        out.held.popleft()
                    continue
                ordered = [e for e in events[resent:] if e[0] in ORDERED]
                if not ordered and not resent:
                    continue                             # pose frames: latest-wins, never sent again
                if not out.held:
                    out.held_since = now
                out.held.extend(ordered)
                if now - out.held_since > self.retry:
                    self.stats.lost += len(out.held)
                    log.warning("redis: %d ordered messages of room %s not received by every process in %.0f s: "
                                "given up", len(out.held), room_id, self.retry)
                    out.held.clear()
                else:
                    out.retry_at = now + 0.05

    def _expected(self, room_id: str) -> int:
        """How many processes must receive a room's message: this one and those its remote members are on."""
        room = self._rooms.get(room_id)
        if room is None:
            return 0
        return 1 + len({m.worker for m in room.remote_members() if m.worker not in self._dead})

    # --- receiving ------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        pubsub, subscribed, first, down_since = None, set(), True, None
        control = self.key("w", self.worker)
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.r.pubsub()
                    pubsub.subscribe(control)
                    subscribed = set()
                with self._cond:
                    wanted = set(self._rooms)
                    gone = self._unsubscribe & subscribed
                    self._unsubscribe -= gone
                for room_id in wanted - subscribed:
                    pubsub.subscribe(self.key("ch", room_id))
                    subscribed.add(room_id)
                if gone:
                    pubsub.unsubscribe(*[self.key("ch", r) for r in gone])
                    subscribed -= gone
                message = pubsub.get_message(timeout=0.05)
                while message is not None:
                    self._received(message)
                    if message["type"] == "subscribe" and message["channel"].decode() == control:
                        if not first:
                            self.stats.resubscriptions += 1
                            log.warning("redis: resubscribed to %d rooms after %.1f s without Redis",
                                        len(wanted), time.monotonic() - (down_since or time.monotonic()))
                            for room_id in wanted:
                                self._queue(room_id, ["S"])
                        first, down_since = False, None
                        self.stats.connected = True
                    message = pubsub.get_message(timeout=0)
            except REDIS_ERRORS as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("redis: subscription lost (%s); resubscribing", exc)
                self.stats.connected = False
                try:
                    if pubsub is not None:
                        pubsub.close()
                except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                    pass
                pubsub = None
                self._stop.wait(0.2)
            except Exception:
                log.exception("redis: listener failed; resubscribing")
                pubsub = None
                self._stop.wait(0.2)

    def _received(self, message: dict) -> None:
        kind = message["type"]
        channel = message["channel"].decode()
        room_id = channel[len(self.key("ch")) + 1:] if channel.startswith(self.key("ch") + ":") else None
        if kind == "subscribe" and room_id is not None:
            with self._cond:
                ready = self._subscribed.get(room_id)
            if ready is not None:
                ready.set()
            return
        if kind != "message" or room_id is None:
            return
        data = message["data"]
        if data.startswith(self._origin):                  # its own batch, back from Redis
            return
        head, _, body = data.partition(b"\n")
        origin, events = head.decode(), msgpack.unpackb(body)
        room = self._rooms.get(room_id)
        if room is None:
            return
        for event in events:
            try:
                self._apply(room, origin, event)
            except Exception:
                log.exception("redis: event %r of room %s from %s failed", event[:1], room_id, origin)

    def _apply(self, room, origin: str, event: list) -> None:
        kind = event[0]
        if kind == "P":
            room.remote_pose(event[1], event[2], event[3])
            return
        if kind == "A":
            room.remote_audio(event[1], p.decode_client(event[2]))
            return
        if kind == "S":
            for slot, frame, key in room.latest_poses():
                self._queue(room.room_id, ["P", slot, frame, key])
            return
        seen = self._seen.get((room.room_id, origin))     # ordered: once each (a re-sent one may come twice)
        if seen is None:
            seen = self._seen[(room.room_id, origin)] = (set(), deque())
        if event[1] in seen[0]:
            return
        seen[0].add(event[1])
        seen[1].append(event[1])
        if len(seen[1]) > SEEN:
            seen[0].discard(seen[1].popleft())
        if kind == "O":
            room.remote_ordered(event[3])
        elif kind == "C":
            room.remote_chat(event[2], event[3], event[4])
        elif kind == "J":
            room.remote_attached(_participant(event[2], event[3]))
        elif kind == "L":
            room.remote_left(event[2])
        elif kind == "T":
            room.remote_moved(event[2], origin)
        elif kind == "R":
            room.remote_stop_recording()

    # --- heartbeat, dead processes, leases ------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.tick()
            except REDIS_ERRORS:
                pass
            except Exception:
                log.exception("redis: heartbeat failed")

    def tick(self) -> None:
        start = time.perf_counter()
        self.r.set(self.key("worker", self.worker), 1, px=int(self.heartbeat * 3000))
        self.stats.rtt_ms = (time.perf_counter() - start) * 1000
        with self._cond:
            rooms = list(self._rooms.values())
            leases = dict(self.leases)
        workers = sorted({m.worker for room in rooms for m in room.remote_members()} - {self.worker})
        alive = dict(zip(workers, self.r.mget([self.key("worker", w) for w in workers]))) if workers else {}
        now = time.monotonic()
        for worker, beat in alive.items():
            if beat is None and worker not in self._dead:
                self._dead[worker] = now
                log.warning("redis: process %s stopped its heartbeat: its participants are away for %.0f s",
                            worker, self.resume_grace)
            elif beat is not None:
                self._dead.pop(worker, None)
        for room in rooms:
            for member in room.remote_members():
                since = self._dead.get(member.worker)
                if since is not None and now - since > self.resume_grace:
                    if self._drop(keys=[self.members_key(room.room_id)], args=[member.user_id, member.worker]):
                        self._queue(room.room_id, ["L", member.user_id], ordered=True)
                        room.remote_left(member.user_id)         # (else another process did, or it resumed)
        for room_id, on_lease in leases.items():
            was = room_id in self._held_leases
            held = self._take_lease(room_id)
            if held and not was:
                log.info("redis: this process took over the AI host of room %s", room_id)
                on_lease()
            elif was and not held:
                self._held_leases.discard(room_id)
        for worker in [w for w, t in self._dead.items() if now - t > 10 * max(self.resume_grace, 1)]:
            del self._dead[worker]


class RoomLink:
    """One room's tie to the bus (meeting.room.RoomLink)."""

    def __init__(self, bus: RedisBus, room):
        self.bus, self.room, self.room_id = bus, room, room.room_id
        self.members = bus.members_key(room.room_id)

    def reserve(self, user_id: str, display_name: str, is_host: bool, nonce: str, max_humans: int,
                avatar: str = "") -> int:
        bus = self.bus
        rec = msgpack.packb([0, display_name, int(is_host), nonce, bus.worker, "r", time.time(), [nonce], avatar])
        slot = bus._call(bus._reserve, keys=[self.members], args=[user_id, rec, max_humans, int(is_host),
                                                                   time.time(), bus.reservation_ttl])
        if slot == -1:
            raise UserAlreadyInRoom(f"user {user_id!r} is already in room {self.room_id!r}")
        if slot == -2:
            raise RoomFull(f"room {self.room_id!r} is full ({max_humans} participants)")
        return int(slot)

    def claim(self, user_id: str, nonce: str) -> Participant | None:
        bus = self.bus
        got = bus._call(bus._claim, keys=[self.members], args=[user_id, nonce, bus.worker])
        if not got:
            return None
        before, packed = got[0].decode(), msgpack.unpackb(got[1])
        member = _participant(user_id, packed)
        member.worker = None
        if before != bus.worker:
            log.info("room %s: %s taken over from %s", self.room_id, user_id, before)
            bus._queue(self.room_id, ["T", user_id], ordered=True)
        return member

    def attached(self, member: Participant) -> None:
        bus = self.bus
        try:
            bus.r.hset(self.members, member.user_id, bus.record(member, "c"))
        except REDIS_ERRORS as exc:
            log.warning("room %s: %s connected, but Redis did not store it: %s", self.room_id, member.user_id, exc)
        bus._queue(self.room_id, ["J", member.user_id, [member.slot, member.display_name, int(member.is_host),
                                                         "", bus.worker, "c", time.time(), [], member.avatar]],
                   ordered=True)

    def away(self, member: Participant) -> None:
        try:
            self.bus.r.hset(self.members, member.user_id, self.bus.record(member, "a"))
        except REDIS_ERRORS:
            pass

    def left(self, member: Participant, announce: bool) -> None:
        bus = self.bus
        try:
            dropped = bus._drop(keys=[self.members], args=[member.user_id, bus.worker])
        except REDIS_ERRORS:
            dropped = announce
        if dropped and announce:
            bus._queue(self.room_id, ["L", member.user_id], ordered=True)

    def pose(self, slot: int, frame: bytes, key: bool) -> None:
        self.bus._queue(self.room_id, ["P", slot, frame, key])

    def ordered(self, slot: int, message: bytes) -> None:
        self.bus._queue(self.room_id, ["O", slot, message], ordered=True)

    def chat(self, slot: int, text: str, ts_ms: int) -> None:
        self.bus._queue(self.room_id, ["C", slot, text, ts_ms], ordered=True)

    def audio(self, slot: int, message: bytes) -> None:
        self.bus._queue(self.room_id, ["A", slot, message])

    def stop_recording(self) -> None:
        self.bus._queue(self.room_id, ["R"], ordered=True)


def _participant(user_id: str, rec: list) -> Participant:
    slot, name, is_host, nonce, worker = rec[:5]
    member = Participant(user_id, name, slot, nonce, time.monotonic(), bool(is_host), worker=worker)
    member.jtis = set(rec[7]) if len(rec) > 7 else set()
    member.avatar = rec[8] if len(rec) > 8 else ""
    return member
