"""A load-generating process: hundreds of participants on one epoll loop, driven over a pipe.

Every room lives in one process, so a sender's send times and its receivers' receive times are read from
the same clock (time.monotonic) without crossing processes. Commands (tuples over the pipe), each answered
with ("ok", result) or ("error", text):
    ("connect", host, port, rooms)  rooms: [(room_id, [(user_id, token, ws_url, stuck[, port]), ...]), ...]
                                    (a member's own port: the server it joined; `port` otherwise)
    ("run", schedule)               see Worker.run
    ("close",)                      close every socket
    ("exit",)

`flood_main` is the entry point of another kind of load process, the flooding clients' (FloodWorker): the same
commands, with rooms of [(user_id, token, ws_url[, port]), ...].
"""
from __future__ import annotations

import os
import pathlib
import select
import time
from array import array
from collections import Counter

import numpy as np

from bench.posegen import pose_sequence, quantized
from bench.stats import bucket_drops
from bench.wsclient import OP_BIN, Connection, EventLoop, client_frame, open_websocket
from wire import posedata
from wire import protocol as p

CHECKED_PER_CLIENT = 20                       # relayed poses per receiver also decoded by the real codec
STUCK_RCVBUF = 4096                           # a stuck reader's receive buffer
STUCK_MSS = 256                               # and a small MSS: the server sizes its send buffer from the MSS
                                              # (64 KiB on loopback: MiBs, minutes to fill at 4 KB/s); with
                                              # 256 bytes its buffers fill within about 2 s


class Room:
    def __init__(self, room_id: str):
        self.room_id = room_id
        self.by_slot: dict[int, Participant] = {}
        self.members: list[Participant] = []
        self.outsiders: frozenset[int] = frozenset()   # slots of members in another process (the flooders)


class PoseCounting:
    """What a load client does with each relayed POSE (the WebSocket's and WebRTC's alike): which of the sender's
    frames it is (by its 8-bit seq), that it arrived, and how long it took. Needs `worker`, `room`, `last_idx`.
    A POSE from one of `outsiders` (a flooding client's slot; that client lives in the flood process) is only
    counted apart: it is neither a frame the others wait for nor part of their latencies."""

    outsiders: frozenset[int] = frozenset()

    def count_pose(self, slot: int, seq: int, wire_bytes: int, now: float) -> None:
        w = self.worker
        if slot in self.outsiders:
            w.count_outsider(self, slot, now)
            return
        if w.current >= 0:
            w.pose_msgs[w.current] += 1
            w.pose_bytes[w.current] += wire_bytes
        last = self.last_idx[slot]
        idx = last + ((seq - last - 1) & 0xFF) + 1
        self.last_idx[slot] = idx
        sender = self.room.by_slot.get(slot)
        if sender is None or idx >= len(sender.sent):
            w.anomalies["pose from a slot no bench client holds (the AI host?)"] += 1
            return
        sender.delivered[idx] += 1
        t = sender.sent[idx]
        if t >= w.record_from:
            w.rec_send.append(t)
            w.rec_lat.append(now - t)


class Participant(Connection, PoseCounting):
    """One client: sends POSE at the tier's rate and timestamps every relayed POSE it receives."""

    def __init__(self, sock, leftover: bytes, worker: Worker, room: Room, user_id: str, stuck: bool):
        super().__init__(sock, leftover)
        self.worker, self.room, self.user_id, self.stuck = worker, room, user_id, stuck
        self.ports = sock.getsockname()[1], sock.getpeername()[1]    # (client, server)
        self.slot: int | None = None
        self.fps, self.bits = 0, 0
        self.last_idx = [-1] * (p.MAX_SLOT + 1)    # per sender: the absolute index of its last frame received
        self.sent = array("d")                      # send time of each frame, by absolute index
        self.delivered = array("H")                 # receptions of each frame (by the other members)
        self.checked = 0
        self.stream: posedata.PoseStream | None = None

    # --- receiving ---------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        self.worker.window_bytes(now, len(data))
        super().feed(data, now)

    def on_binary(self, buf: bytearray, s: int, n: int, now: float) -> None:
        w = self.worker
        wi = w.current
        if wi >= 0:
            w.rx_msgs[wi] += 1
        # a relayed POSE: fixarray(4), version 1, type 1, bin8 of n - 6 bytes, slot as a positive fixint
        if n > 7 and buf[s] == 0x94 and buf[s + 1] == 1 and buf[s + 2] == 1 and buf[s + 3] == 0xC4 \
                and n == 6 + buf[s + 4] and buf[s + n - 1] < 64:
            slot = buf[s + n - 1]
            if self.checked < CHECKED_PER_CLIENT:
                self._check(bytes(buf[s:s + n]), slot)
            self.count_pose(slot, buf[s + 6], n + (2 if n < 126 else 4), now)
            return
        self._message(bytes(buf[s:s + n]))

    def _check(self, data: bytes, slot: int) -> None:
        self.checked += 1
        try:
            msg = p.decode_server(data)
        except p.ProtocolError as exc:
            self.worker.anomalies[f"relayed POSE refused by protocol.decode_server: {exc.message}"] += 1
            return
        if not (isinstance(msg, p.Pose) and msg.slot == slot):
            self.worker.anomalies["fast path disagrees with protocol.decode_server"] += 1

    def _message(self, data: bytes) -> None:
        try:
            msg = p.decode_server(data)
        except p.ProtocolError as exc:
            self.worker.anomalies[f"undecodable: {exc.code}"] += 1
            return
        if isinstance(msg, p.Welcome):
            self.slot = msg.slot
            self.room.by_slot[msg.slot] = self
        elif isinstance(msg, p.Tier):
            self.fps, self.bits = msg.fps, msg.bits
            self.worker.last_tier_at = time.monotonic()
        elif isinstance(msg, p.Error):
            self.worker.anomalies[f"ERROR {msg.code}"] += 1
        elif isinstance(msg, p.Pose):
            self.worker.anomalies["a POSE the fast path did not recognise"] += 1

    def on_other(self, b0: int, payload: bytes) -> None:
        self.worker.anomalies[f"unexpected frame 0x{b0:02x}"] += 1

    def on_lost(self) -> None:
        if not self.worker.closing:
            self.worker.anomalies[f"socket closed by the server ({self.close_code})"] += 1

    # --- sending -----------------------------------------------------------------------------

    def start_sending(self, first: float, period: float, stop: float, frames: list[list[int]], offset: int):
        self.stream = posedata.PoseStream(self.bits, self.fps)
        self.frames, self.offset, self.period, self.stop_at = frames, offset, period, stop
        self.t0, self.k = first, 0
        size = int((stop - first) / period) + 2
        self.delivered = array("H", bytes(2 * size))
        self.worker.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        if self.closed:
            return
        q = self.frames[(self.offset + self.k) % len(self.frames)]
        msg = p.encode(p.Pose(self.stream.encode(q)))
        self.sent.append(time.monotonic())
        self.send(msg)
        self.k += 1
        nxt = self.t0 + self.k * self.period
        if nxt < self.stop_at:
            self.worker.loop.call_at(nxt, self._tick)


class LoadWorker:
    """A load process (the WebSocket's and WebRTC's alike): commands from the parent over a pipe, what it counts
    per measurement window, the clients' sending schedule and the per-window report. A subclass has `conn`,
    `loop` (with `call_at`), `rooms` (of members with `sent`, `delivered`, `fps`, `bits`, `stuck`),
    `anomalies`, `stuck_queues` and `_frames`."""

    def serve(self) -> None:
        while True:
            cmd = self.conn.recv()
            if cmd[0] == "exit":
                self.conn.send(("ok", None))
                return
            try:
                self.conn.send(("ok", getattr(self, cmd[0])(*cmd[1:])))
            except Exception as exc:  # reported to the parent, which stops the benchmark
                self.conn.send(("error", f"{exc.__class__.__name__}: {exc}"))

    def _start(self, sched: dict) -> dict[str, tuple[float, float]]:
        """Reset the counters for `sched`'s windows, mark the process's CPU time at their edges and start every
        client sending from its own phase (a golden-ratio spread). Returns the CPU marks, filled as time goes."""
        self._reset(sched["windows"])
        cpu_marks: dict[str, tuple[float, float]] = {}
        for name, a, b in self.windows:
            for edge, t in (("a", a), ("b", b)):
                self.loop.call_at(t, lambda k=f"{name}:{edge}": cpu_marks.__setitem__(k, os.times()[:2]))
        g = sched.get("phase_seed", 0)
        for room in self.rooms:
            for j, m in enumerate(room.members):
                period = 1.0 / (m.fps * sched["rate_factor"])
                g += 1
                phase = (g * 0.6180339887) % 1.0
                m.start_sending(sched["start"] + phase * period, period, sched["stop_send"],
                                self._pose_frames(m.fps, m.bits), 37 * j)
        return cpu_marks

    def _pose_frames(self, fps: int, bits: int) -> list[list[int]]:
        key = (fps, bits)
        if key not in self._frames:
            self._frames[key] = quantized(pose_sequence(60.0, fps, seed=fps), bits)
        return self._frames[key]

    def _report(self, cpu_marks: dict[str, tuple[float, float]]) -> list[dict]:
        """Per window: what was expected and delivered, latencies, bytes, CPU (arrays for the parent)."""
        rec_send = np.frombuffer(self.rec_send, dtype=np.float64)
        rec_lat = np.frombuffer(self.rec_lat, dtype=np.float64)
        stuck_from = min((a for name, a, _ in self.windows if name == "stuck"), default=float("inf"))
        out = []
        for i, (name, a, b) in enumerate(self.windows):
            sel = (rec_send >= a) & (rec_send < b)
            expected = delivered = lost_all = lost_all_stuck = lost_some = paced_out = 0
            missing_age = []
            for room in self.rooms:
                for s in room.members:
                    t = np.frombuffer(s.sent, dtype=np.float64)
                    idx = np.nonzero((t >= a) & (t < b))[0]
                    readers = sum(1 for m in room.members if m is not s and not (m.stuck and a >= stuck_from))
                    got = np.frombuffer(s.delivered, dtype=np.uint16)[idx].astype(np.int64)
                    expected += readers * len(idx)
                    delivered += int(got.sum())
                    lost = np.maximum(readers - got, 0)
                    missing_age.append(np.repeat(t[idx], lost))
                    lost_all += int((got == 0).sum())
                    lost_all_stuck += int((got == 0).sum()) if s.stuck else 0
                    lost_some += int(((got > 0) & (got < readers)).sum())
                    paced_out += sum(1 for j in bucket_drops(s.sent, s.fps) if a <= s.sent[j] < b)
            out.append({
                "name": name, "seconds": b - a, "expected": expected, "delivered": delivered,
                "latency_s": rec_lat[sel].astype(np.float32), "send_t": rec_send[sel],
                "missing_sent_at": np.concatenate(missing_age) if missing_age else np.zeros(0),
                "frames_lost_for_all": lost_all, "frames_lost_for_some": lost_some,
                "frames_over_rate_as_sent": paced_out, "frames_lost_for_all_sent_by_stuck": lost_all_stuck,
                "rx_msgs": self.rx_msgs[i], "rx_reads": self.rx_reads[i], "rx_bytes": self.rx_bytes[i],
                "pose_msgs": self.pose_msgs[i], "pose_bytes": self.pose_bytes[i],
                "readers": sum(1 for r in self.rooms for m in r.members if not (m.stuck and a >= stuck_from)),
                "cpu_user_s": cpu_marks[name + ":b"][0] - cpu_marks[name + ":a"][0],
                "cpu_sys_s": cpu_marks[name + ":b"][1] - cpu_marks[name + ":a"][1],
                "anomalies": dict(self.anomalies),
                "stuck_queues": getattr(self, "queues", {}).get(name, self.stuck_queues),
                "outsider_frames_received": self.outsider_msgs[i],
                "outsider_frames_relayed": _most_per_sender(self.outsider_rx, i),
                "outsider_frames_relayed_since_flood": _most_per_sender(self.outsider_rx, "flood")})
        return out

    def count_outsider(self, receiver, slot: int, now: float) -> None:
        """A POSE from an outsider's slot (a flooder's): per window, and per (receiver, sender) since the flood."""
        if self.current >= 0:
            self.outsider_msgs[self.current] += 1
            self.outsider_rx[(self.current, receiver.room.room_id, slot, receiver.user_id)] += 1
        if now >= self.outsider_from:
            self.outsider_rx[("flood", receiver.room.room_id, slot, receiver.user_id)] += 1


    def _reset(self, windows: list[tuple[str, float, float]]) -> None:
        self.windows = windows
        k = len(windows)
        self.current, self.win_a, self.win_b = -1, 0.0, 0.0
        self.rx_msgs, self.rx_bytes, self.rx_reads = [0] * k, [0] * k, [0] * k
        self.pose_msgs, self.pose_bytes = [0] * k, [0] * k
        self.rec_send, self.rec_lat = array("d"), array("d")
        self.record_from = min((a for _, a, _ in windows), default=float("inf"))
        self.outsider_msgs = [0] * k
        self.outsider_rx: Counter = Counter()
        self.outsider_from = float("inf")

    def window_bytes(self, now: float, n: int) -> None:
        if not self.win_a <= now < self.win_b:
            self.current, self.win_a, self.win_b = -1, 0.0, 0.0
            for i, (_, a, b) in enumerate(self.windows):
                if a <= now < b:
                    self.current, self.win_a, self.win_b = i, a, b
            if self.current < 0:
                return
        self.rx_bytes[self.current] += n
        self.rx_reads[self.current] += 1


class Worker(LoadWorker):
    def __init__(self, conn):
        self.conn = conn
        self.rooms: list[Room] = []
        self.closing = False
        self.anomalies: Counter = Counter()
        self.last_tier_at = 0.0
        self.loop = EventLoop()
        self._frames: dict[tuple[int, int], list[list[int]]] = {}
        self._reset([])

    def connect(self, host: str, port: int, rooms: list, timeout: float = 30.0) -> dict:
        self.closing, self.rooms, self.loop = False, [], EventLoop()
        self.stuck_queues = {}
        self.anomalies.clear()
        for room_id, members in rooms:
            room = Room(room_id)
            self.rooms.append(room)
            for user_id, token, ws_url, stuck, *own_port in members:
                sock, rest = open_websocket(host, own_port[0] if own_port else port, ws_url,
                                            rcvbuf=STUCK_RCVBUF if stuck else None, mss=STUCK_MSS if stuck else None,
                                            timeout=timeout)
                member = Participant(sock, b"", self, room, user_id, stuck)
                room.members.append(member)
                self.loop.add(member)
                if rest:
                    member.feed(rest, time.monotonic())
                member.send(p.encode(p.Join(token)))
        members = [m for r in self.rooms for m in r.members]

        def settled() -> bool:                 # every client has its slot and a TIER, and none came for a while
            return all(m.fps and m.slot is not None for m in members) and time.monotonic() - self.last_tier_at > 0.5

        if not self.loop.run_until(time.monotonic() + timeout, settled):
            raise TimeoutError("clients did not get WELCOME and TIER")
        for room in self.rooms:
            if len({(m.fps, m.bits) for m in room.members}) != 1:
                self.anomalies["members of a room disagree on the tier"] += 1
        return {"clients": len(members), "fps": sorted({m.fps for m in members}),
                "bits": sorted({m.bits for m in members})}

    def run(self, sched: dict) -> list[dict]:
        """sched: start, stop_send, until (end of drain), windows [(name, a, b)], stuck_at (or None),
        rate_factor, phase_seed; optional: outsiders {room_id: [slot, ...]} (the flooders, in the flood process)
        and flood_at (when they start flooding). Every client sends from its own phase after `start` until
        `stop_send`."""
        loop = self.loop
        outsiders = sched.get("outsiders") or {}
        for room in self.rooms:
            room.outsiders = frozenset(outsiders.get(room.room_id, ()))
            for m in room.members:
                m.outsiders = room.outsiders
        self.queues = {}
        cpu_marks = self._start(sched)
        if sched.get("flood_at") is not None:
            self.outsider_from = sched["flood_at"]
        if sched.get("stuck_at") is not None:
            loop.call_at(sched["stuck_at"], self._get_stuck)
            for name, _, b in self.windows:
                if name in ("stuck", "flood"):
                    loop.call_at(b - 0.01, lambda name=name: self._read_stuck_queues(name))
        loop.run_until(sched["until"])
        return self._report(cpu_marks)

    def _get_stuck(self) -> None:
        for room in self.rooms:
            for m in room.members:
                if m.stuck:
                    self.loop.pause(m)

    def _read_stuck_queues(self, window: str = "stuck") -> None:
        """Bytes waiting in both ends of each stuck reader's TCP connection (/proc/net/tcp) at the end of
        `window`: the server's send queue shows whether its socket filled up."""
        q = tcp_queues({m.ports for r in self.rooms for m in r.members if m.stuck})
        self.queues[window] = q
        if window == "stuck":
            self.stuck_queues = q

    def close(self) -> dict:
        self.closing = True
        members = [m for room in self.rooms for m in room.members]
        for m in members:
            m.close()
        self.loop.run_until(time.monotonic() + 0.3)
        self.loop.close()
        for m in members:
            m.sock.close()
        blocked = sum(m.send_blocked for m in members)
        if blocked:
            self.anomalies["client sends the socket would not take at once"] += blocked
        anomalies = dict(self.anomalies)
        self.rooms = []
        return anomalies


def worker_main(conn) -> None:
    """Entry point of a load process (multiprocessing target)."""
    Worker(conn).serve()


def tcp_queues(pairs: set[tuple[int, int]]) -> dict[str, list[int]]:
    """Bytes queued at both ends of the loopback TCP connections given as (client port, server port) pairs,
    from /proc/net/tcp."""
    q: dict[str, list[int]] = {"server_send_queue_bytes": [], "server_recv_queue_bytes": [],
                               "client_send_queue_bytes": [], "client_recv_queue_bytes": []}
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        side = "server" if (remote, local) in pairs else "client" if (local, remote) in pairs else None
        if side:
            q[f"{side}_send_queue_bytes"].append(tx)
            q[f"{side}_recv_queue_bytes"].append(rx)
    return q


def _most_per_sender(rx: Counter, window) -> int:
    """Frames of each outsider that reached its best-served receiver, summed over the outsiders: how many of
    its frames the server relayed (a receiver's queue may replace a pose by a newer one; the best one lost least)."""
    best: dict[tuple, int] = {}
    for (w, room, slot, _), n in rx.items():
        if w == window:
            best[(room, slot)] = max(best.get((room, slot), 0), n)
    return sum(best.values())



# --- flooding clients ---------------------------------------------------------------------------------------
#
# The flooders live in a load process of their own (fanout starts one for all of them), not in the processes
# that measure: a flooder writes as much as its socket takes, and in a measuring process every byte of that
# would be written between the measuring clients' reads and sends on the same loop, delaying their timestamps
# (the bench's own artefact, not the server's). In a process of its own it costs what a real flooding client on
# the same machine would: the scheduler's share of a core, no more. It cannot spin either: it writes only while
# the socket says it is writable (epoll, level-triggered), at most FLOOD_WAKE_BYTES per wake-up before it looks
# at its timers and reads again, and the server, which parses every frame, is far slower than the kernel's copy,
# so the flooder spends most of the flood asleep waiting for room in its socket.

FLOOD_CHUNK_FRAMES = 256                # pose frames in one pre-masked chunk a flooder writes
FLOOD_WAKE_BYTES = 1 << 20              # the most a flooder writes per wake-up before the loop runs its timers


class FloodLoop(EventLoop):
    """EventLoop with interest in writing: a connection that wants it gets `write_ready(now)` whenever its socket
    has room (level-triggered EPOLLOUT), besides `read(now)` when there is something to read."""

    def want_write(self, conn: Connection, on: bool) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            self.ep.modify(fd, select.EPOLLIN | (select.EPOLLOUT if on else 0))

    def ready(self, conn: Connection, ev: int, now: float) -> None:
        if ev & select.EPOLLOUT:
            conn.write_ready(now)
        if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not conn.closed:
            conn.read(now)


class Flooder(Connection):
    """A flooding participant. Until the flood it is like any other (POSE at the tier's rate, reads everything);
    during the flood it writes pre-masked POSE key frames as fast as its socket takes them (the server drops the
    excess by its per-sender rate limit) and CHAT at the flood's chat rate, above the server's (it answers ERROR
    rate_limited). From the flood's start until its queue is written out, every frame (pongs too) goes through
    that queue, whole frames in order. What it receives it counts, nothing more."""

    def __init__(self, sock, worker: FloodWorker, room_id: str, user_id: str):
        super().__init__(sock, b"")
        self.worker, self.room_id, self.user_id = worker, room_id, user_id
        self.ports = sock.getsockname()[1], sock.getpeername()[1]    # (client, server)
        self.slot: int | None = None
        self.fps, self.bits = 0, 0
        self.stream: posedata.PoseStream | None = None
        self.flooding = False                   # writing the flood
        self.via_queue = False                  # frames go through `urgent` and `pending`
        self.pending = memoryview(b"")          # what is left of the chunk being written
        self.pending_frames = self.pending_chats = 0
        self.urgent: list[bytes] = []           # frames to write before the next chunk (the rest of `out`, pongs)
        self.chat_due = 0

    # --- the normal participant before the flood -------------------------------------------------------------

    def start_normal(self, first: float, rate_factor: float, stop: float, offset: int) -> None:
        self.rate_factor, self.normal_stop, self.offset, self.k, self.next_at = rate_factor, stop, offset, 0, first
        self.worker.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        if self.closed or self.via_queue or not self.fps:
            return
        if self.stream is None:
            self.stream = posedata.PoseStream(self.bits, self.fps)
        elif (self.stream.bits, self.stream.key_every) != (self.bits, self.fps):
            self.stream.set_tier(self.bits, self.fps)       # the page follows a TIER the same way
        frames = self.worker._pose_frames(self.fps, self.bits)
        self.send(p.encode(p.Pose(self.stream.encode(frames[(self.offset + self.k) % len(frames)]))))
        self.k += 1
        self.next_at += 1.0 / (self.fps * self.rate_factor)
        if self.next_at < self.normal_stop:
            self.worker.loop.call_at(self.next_at, self._tick)

    # --- the flood ---------------------------------------------------------------------------------------------

    def start_flood(self) -> None:
        if self.closed:
            return
        self.flooding = self.via_queue = True
        if self.out:                            # the rest of a frame the socket did not take: first
            self.urgent.append(bytes(self.out))
            self.out = b""
        self.worker.loop.want_write(self, True)

    def stop_flood(self) -> None:
        self.flooding = False                   # the chunk being written is finished, then the queue emptied

    def chat(self) -> None:
        if self.flooding and not self.closed:
            self.chat_due += 1
            self.worker.loop.want_write(self, True)

    def send(self, payload: bytes, opcode: int = OP_BIN) -> None:
        if not self.via_queue:
            super().send(payload, opcode)
        elif not self.closed:
            self.urgent.append(client_frame(payload, opcode))
            self.worker.loop.want_write(self, True)

    def _refill(self) -> bool:
        parts, self.urgent = self.urgent, []
        chats = frames = 0
        if self.flooding:
            w = self.worker
            while self.chat_due:
                w.chats_made += 1
                parts.append(client_frame(p.encode(p.Chat(f"flood {self.user_id} #{w.chats_made}")), OP_BIN))
                self.chat_due -= 1
                chats += 1
            parts.append(w.flood_chunk(self.bits))
            frames = FLOOD_CHUNK_FRAMES
        if not parts:
            return False
        self.pending, self.pending_frames, self.pending_chats = memoryview(b"".join(parts)), frames, chats
        return True

    def write_ready(self, now: float) -> None:
        budget = FLOOD_WAKE_BYTES
        while budget > 0:
            if not self.pending and not self._refill():
                self.via_queue = False          # the flood is over and its queue written: back to plain sends
                self.worker.loop.want_write(self, False)
                return
            try:
                n = self.sock.send(self.pending)
            except BlockingIOError:
                return
            except OSError:
                self.closed, self.pending, self.urgent = True, memoryview(b""), []
                return
            budget -= n
            self.pending = self.pending[n:]
            if self.pending:
                return                          # the socket is full: wait until it has room again
            self.worker.flood_written(self.pending_frames, self.pending_chats, now)

    def finish(self, timeout: float = 2.0) -> None:
        """Write the rest of the queue (blocking, at most `timeout` s): the close frame must follow whole frames."""
        if not self.via_queue:
            return
        self.flooding = False
        rest = bytes(self.pending) + b"".join(self.urgent)
        self.pending, self.urgent, self.via_queue = memoryview(b""), [], False
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(rest)
            self.sock.setblocking(False)
        except OSError:
            self.closed = True

    # --- receiving ---------------------------------------------------------------------------------------------

    def on_binary(self, buf: bytearray, s: int, n: int, now: float) -> None:
        w = self.worker
        if n > 7 and buf[s] == 0x94 and buf[s + 1] == 1 and buf[s + 2] == 1:      # a relayed POSE
            w.rx_poses += 1
            return
        try:
            msg = p.decode_server(bytes(buf[s:s + n]))
        except p.ProtocolError as exc:
            w.anomalies[f"undecodable: {exc.code}"] += 1
            return
        if isinstance(msg, p.Welcome):
            self.slot = msg.slot
        elif isinstance(msg, p.Tier):
            self.fps, self.bits = msg.fps, msg.bits
            w.last_tier_at = time.monotonic()
        elif isinstance(msg, p.Error):
            w.error(msg.code, now)

    def on_other(self, b0: int, payload: bytes) -> None:
        self.worker.anomalies[f"unexpected frame 0x{b0:02x}"] += 1

    def on_lost(self) -> None:
        if not self.worker.closing:
            self.worker.anomalies[f"socket closed by the server ({self.close_code})"] += 1


class FloodWorker(LoadWorker):
    """The flooders' load process: the commands of Worker (connect, run, close); see Flooder."""

    def __init__(self, conn):
        self.conn = conn
        self.flooders: list[Flooder] = []
        self.closing = False
        self.anomalies: Counter = Counter()
        self.last_tier_at = 0.0
        self.loop = FloodLoop()
        self._frames: dict[tuple[int, int], list[list[int]]] = {}
        self._chunks: dict[int, tuple[bytes, int]] = {}
        self.windows: list = []

    def connect(self, host: str, port: int, rooms: list, timeout: float = 30.0) -> dict:
        """rooms: [(room_id, [(user_id, token, ws_url[, port]), ...]), ...]. Returns the flooders' slots by room."""
        self.closing, self.flooders, self.loop = False, [], FloodLoop()
        self.anomalies.clear()
        for room_id, members in rooms:
            for user_id, token, ws_url, *own_port in members:
                sock, rest = open_websocket(host, own_port[0] if own_port else port, ws_url, timeout=timeout)
                f = Flooder(sock, self, room_id, user_id)
                self.flooders.append(f)
                self.loop.add(f)
                if rest:
                    f.feed(rest, time.monotonic())
                f.send(p.encode(p.Join(token)))

        def settled() -> bool:
            return all(f.fps and f.slot is not None for f in self.flooders) and \
                time.monotonic() - self.last_tier_at > 0.5

        if not self.loop.run_until(time.monotonic() + timeout, settled):
            raise TimeoutError("flooders did not get WELCOME and TIER")
        slots: dict[str, list[int]] = {}
        for f in self.flooders:
            slots.setdefault(f.room_id, []).append(f.slot)
        return {"clients": len(self.flooders), "slots": slots}

    def flood_chunk(self, bits: int) -> bytes:
        """FLOOD_CHUNK_FRAMES POSE key frames at `bits` (seq 0..255, key ids 0..31), each a masked client
        frame: built once, written again and again (the server checks frames, not masks)."""
        if bits not in self._chunks:
            q = self._pose_frames(10, bits)
            frames = [client_frame(p.encode(p.Pose(posedata.encode_key(q[i % len(q)], bits, i & 0x1F, i & 0xFF))))
                      for i in range(FLOOD_CHUNK_FRAMES)]
            assert len({len(f) for f in frames}) == 1
            self._chunks[bits] = (b"".join(frames), len(frames[0]))
        return self._chunks[bits][0]

    def _window(self, now: float) -> int:
        for i, (_, a, b) in enumerate(self.windows):
            if a <= now < b:
                return i
        return -1

    def flood_written(self, frames: int, chats: int, now: float) -> None:
        i = self._window(now)
        if i >= 0:
            self.win_frames[i] += frames
            self.win_chats[i] += chats
        self.total["flood_frames_sent"] += frames
        self.total["chat_sent"] += chats

    def error(self, code: str, now: float) -> None:
        if code == "rate_limited":
            i = self._window(now)
            if i >= 0:
                self.win_limited[i] += 1
            self.total["chat_rate_limited"] += 1
        else:
            self.anomalies[f"ERROR {code}"] += 1

    def run(self, sched: dict) -> dict:
        """sched as Worker.run's, with flood_at (the flood starts), chat_rate (chat messages a second per flooder
        during the flood). The flood lasts from flood_at to stop_send."""
        loop = self.loop
        self.windows = sched["windows"]
        k = len(self.windows)
        self.win_frames, self.win_chats, self.win_limited = [0] * k, [0] * k, [0] * k
        self.total: Counter = Counter()
        self.rx_poses, self.chats_made, self.backlog = 0, 0, {}
        loop.run_until(time.monotonic() + 0.05)         # TIERs that came while this process waited
        for f in self.flooders:
            self.flood_chunk(f.bits)                     # built now, not at the flood's start
        cpu_marks: dict[str, tuple[float, float]] = {}
        for name, a, b in self.windows:
            for edge, t in (("a", a), ("b", b)):
                loop.call_at(t, lambda key=f"{name}:{edge}": cpu_marks.__setitem__(key, os.times()[:2]))
        g = sched.get("phase_seed", 0)
        for j, f in enumerate(self.flooders):
            g += 1
            period = 1.0 / (max(1, f.fps) * sched["rate_factor"])
            f.start_normal(sched["start"] + ((g * 0.6180339887) % 1.0) * period, sched["rate_factor"],
                           sched["flood_at"], 37 * j)
        loop.call_at(sched["flood_at"], self._flood)
        rate = sched.get("chat_rate") or 0
        if rate > 0:
            def chat(t: float) -> None:
                for f in self.flooders:
                    f.chat()
                if t + 1.0 / rate < sched["stop_send"]:
                    loop.call_at(t + 1.0 / rate, lambda: chat(t + 1.0 / rate))
            loop.call_at(sched["flood_at"], lambda: chat(sched["flood_at"]))
        loop.call_at(sched["stop_send"], self._stop)
        loop.call_at(sched["until"] - 0.01, lambda: self._read_backlog("end"))
        loop.run_until(sched["until"])
        frame_bytes = self._chunks[min(self._chunks)][1] if self._chunks else None
        return {
            "windows": [{"name": name, "flood_frames_sent": self.win_frames[i], "chat_sent": self.win_chats[i],
                         "chat_rate_limited": self.win_limited[i],
                         "cpu_user_s": cpu_marks[name + ":b"][0] - cpu_marks[name + ":a"][0],
                         "cpu_sys_s": cpu_marks[name + ":b"][1] - cpu_marks[name + ":a"][1]}
                        for i, (name, _, _) in enumerate(self.windows)],
            "flooders": len(self.flooders), "frame_bytes": frame_bytes,
            **{key: self.total[key] for key in ("flood_frames_sent", "chat_sent", "chat_rate_limited")},
            "relayed_poses_received": self.rx_poses, **self.backlog}

    def _flood(self) -> None:
        for f in self.flooders:
            f.start_flood()

    def _stop(self) -> None:
        for f in self.flooders:
            f.stop_flood()
        self._read_backlog("stop")

    def _read_backlog(self, when: str) -> None:
        """Flood bytes written but not yet read by the server: the flooders' send queues and the server's
        receive queues of their connections (/proc/net/tcp), plus what the flooders still hold themselves."""
        q = tcp_queues({f.ports for f in self.flooders})
        held = sum(len(f.pending) + sum(map(len, f.urgent)) for f in self.flooders)
        self.backlog[f"backlog_bytes_at_{when}"] = sum(q["client_send_queue_bytes"]) + \
            sum(q["server_recv_queue_bytes"]) + held

    def close(self) -> dict:
        self.closing = True
        for f in self.flooders:
            f.finish()
            f.close()
        self.loop.run_until(time.monotonic() + 0.3)
        self.loop.close()
        for f in self.flooders:
            f.sock.close()
        anomalies = dict(self.anomalies)
        self.flooders = []
        return anomalies


def flood_main(conn) -> None:
    """Entry point of the flooders' load process (multiprocessing target)."""
    FloodWorker(conn).serve()
