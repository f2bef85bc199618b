"""A load-generating process: hundreds of participants on one asyncio loop, driven over a pipe.

Every room lives in one process, so a sender's send times and its receivers' receive times are read from
the same clock (time.monotonic) without crossing processes. Commands (tuples over the pipe):
    ("connect", host, port, rooms)  rooms: [(room_id, [(user_id, token, ws_url, stuck), ...]), ...]
    ("run", schedule)               see Worker.run
    ("close",)                      close every socket
    ("exit",)
"""
from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter

import numpy as np

from bench.posegen import PoseStream, pose_sequence, quantized
from bench.wsclient import WSProtocol, open_socket
from connect import protocol as p

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


class Participant(WSProtocol):
    """One client: sends POSE at the tier's rate and timestamps every relayed POSE it receives."""

    def __init__(self, worker: Worker, room: Room, user_id: str, stuck: bool):
        super().__init__()
        self.worker, self.room, self.user_id, self.stuck = worker, room, user_id, stuck
        self.slot: int | None = None
        self.fps, self.bits, self.count = 0, 0, 0
        self.last_idx = [-1] * (p.MAX_SLOT + 1)    # per sender: the absolute index of its last frame received
        self.sent = array("d")                      # send time of each frame, by absolute index
        self.delivered = array("H")                 # receptions of each frame (by the other members)
        self.checked = 0
        self.welcomed = asyncio.get_running_loop().create_future()
        self.stream: PoseStream | None = None

    # --- receiving ---------------------------------------------------------------------------

    def data_received(self, data: bytes, now: float | None = None) -> None:
        now = time.monotonic()
        w = self.worker
        w.window_bytes(now, len(data))
        super().data_received(data, now)

    def on_binary(self, buf: bytearray, s: int, n: int, now: float) -> None:
        w = self.worker
        wi = w.current
        if wi >= 0:
            w.rx_msgs[wi] += 1
        # a relayed POSE: fixarray(4), version 1, type 1, bin8 of n - 6 bytes, slot as a positive fixint
        if n > 7 and buf[s] == 0x94 and buf[s + 1] == 1 and buf[s + 2] == 1 and buf[s + 3] == 0xC4 \
                and n == 6 + buf[s + 4] and buf[s + n - 1] < 64:
            slot, seq = buf[s + n - 1], buf[s + 6]
            if self.checked < CHECKED_PER_CLIENT:
                self._check(bytes(buf[s:s + n]), slot)
            if wi >= 0:
                w.pose_msgs[wi] += 1
                w.pose_bytes[wi] += n + (2 if n < 126 else 4)
            last = self.last_idx[slot]
            idx = last + ((seq - last - 1) & 0xFF) + 1
            self.last_idx[slot] = idx
            sender = self.room.by_slot.get(slot)
            if sender is None or idx >= len(sender.sent):
                w.anomalies["pose from an unknown frame"] += 1
                return
            sender.delivered[idx] += 1
            t = sender.sent[idx]
            if t >= w.record_from:
                w.rec_send.append(t)
                w.rec_lat.append(now - t)
            return
        self._message(bytes(buf[s:s + n]))

    def _check(self, data: bytes, slot: int) -> None:
        self.checked += 1
        msg = p.decode_server(data)
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
            if not self.welcomed.done():
                self.welcomed.set_result(True)
        elif isinstance(msg, p.Tier):
            self.fps, self.bits, self.count = msg.fps, msg.bits, msg.count
            self.worker.last_tier_at = time.monotonic()
        elif isinstance(msg, p.Error):
            self.worker.anomalies[f"ERROR {msg.code}"] += 1
        elif isinstance(msg, p.Pose):
            self.worker.anomalies["pose with a long payload"] += 1

    def on_other(self, opcode: int, payload: bytes) -> None:
        self.worker.anomalies[f"unexpected frame 0x{opcode:02x}"] += 1

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if not self.worker.closing:
            self.worker.anomalies[f"socket closed by the server ({self.close_code})"] += 1

    # --- sending -----------------------------------------------------------------------------

    def start_sending(self, first: float, period: float, stop: float, frames: list[list[int]], offset: int):
        self.stream = PoseStream(self.bits, self.fps)
        self.frames, self.offset, self.period, self.stop_at = frames, offset, period, stop
        self.t0, self.k = first, 0
        size = int((stop - first) / period) + 2
        self.delivered = array("H", bytes(2 * size))
        asyncio.get_running_loop().call_at(first, self._tick)

    def _tick(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        q = self.frames[(self.offset + self.k) % len(self.frames)]
        msg = p.encode(p.Pose(self.stream.encode(q)))
        self.sent.append(time.monotonic())
        self.send(msg)
        self.k += 1
        nxt = self.t0 + self.k * self.period
        if nxt < self.stop_at:
            asyncio.get_running_loop().call_at(nxt, self._tick)


class Worker:
    def __init__(self, conn):
        self.conn = conn
        self.rooms: list[Room] = []
        self.closing = False
        self.anomalies: Counter = Counter()
        self.last_tier_at = 0.0
        self._frames: dict[tuple[int, int], list[list[int]]] = {}
        self._reset([])

    def _reset(self, windows: list[tuple[str, float, float]]) -> None:
        self.windows = windows
        k = len(windows)
        self.current = -1
        self.rx_msgs, self.rx_bytes = [0] * k, [0] * k
        self.pose_msgs, self.pose_bytes = [0] * k, [0] * k
        self.rec_send, self.rec_lat = array("d"), array("d")
        self.record_from = min((a for _, a, _ in windows), default=float("inf"))

    def window_bytes(self, now: float, n: int) -> None:
        self.current = -1
        for i, (_, a, b) in enumerate(self.windows):
            if a <= now < b:
                self.current = i
                self.rx_bytes[i] += n
                return

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, self.conn.recv)
            try:
                if cmd[0] == "exit":
                    self.conn.send(("ok", None))
                    return
                result = await getattr(self, cmd[0])(*cmd[1:])
                self.conn.send(("ok", result))
            except Exception as exc:  # reported to the parent, which stops the benchmark
                self.conn.send(("error", f"{exc.__class__.__name__}: {exc}"))

    async def connect(self, host: str, port: int, rooms: list, timeout: float = 30.0) -> dict:
        self.closing, self.rooms = False, []
        self.anomalies.clear()
        gate = asyncio.Semaphore(32)
        loop = asyncio.get_running_loop()

        async def one(room: Room, user_id: str, token: str, ws_url: str, stuck: bool) -> None:
            async with gate:
                _, proto, rest = await open_socket(
                    host, port, ws_url, lambda: Participant(self, room, user_id, stuck),
                    rcvbuf=STUCK_RCVBUF if stuck else None, mss=STUCK_MSS if stuck else None)
                room.members.append(proto)
                if rest:
                    proto.data_received(rest)
                proto.send(p.encode(p.Join(token)))
                await asyncio.wait_for(proto.welcomed, timeout)

        jobs = []
        for room_id, members in rooms:
            room = Room(room_id)
            self.rooms.append(room)
            jobs += [one(room, *m) for m in members]
        await asyncio.gather(*jobs)
        deadline = loop.time() + timeout                 # every client has a TIER and none came for a while
        members = [m for r in self.rooms for m in r.members]
        while any(m.fps == 0 for m in members) or time.monotonic() - self.last_tier_at < 0.5:
            if loop.time() > deadline:
                raise TimeoutError("clients did not get their TIER")
            await asyncio.sleep(0.05)
        for room in self.rooms:
            if len({(m.fps, m.bits) for m in room.members}) != 1:
                self.anomalies["members of a room disagree on the tier"] += 1
        return {"clients": len(members), "fps": sorted({m.fps for m in members}),
                "bits": sorted({m.bits for m in members})}

    async def run(self, sched: dict) -> dict:
        """sched: start, stop_send, until (end of drain), windows [(name, a, b)], stuck_at (or None),
        rate_factor. Sends from `start` (each client at its own phase) until `stop_send`."""
        loop = asyncio.get_running_loop()
        self._reset(sched["windows"])
        cpu_marks: dict[str, float] = {}
        for name, a, b in self.windows:
            loop.call_at(a, lambda n=name: cpu_marks.__setitem__(n + ":a", time.process_time()))
            loop.call_at(b, lambda n=name: cpu_marks.__setitem__(n + ":b", time.process_time()))
        g = sched.get("phase_seed", 0)
        for room in self.rooms:
            for j, m in enumerate(room.members):
                period = 1.0 / (m.fps * sched["rate_factor"])
                g += 1
                phase = (g * 0.6180339887) % 1.0          # golden-ratio spread of the clients' phases
                m.start_sending(sched["start"] + phase * period, period, sched["stop_send"],
                                self._pose_frames(m.fps, m.bits), 37 * j)
        if sched.get("stuck_at") is not None:
            loop.call_at(sched["stuck_at"], self._get_stuck)
        await asyncio.sleep(max(0.0, sched["until"] - loop.time()))
        return self._report(cpu_marks)

    def _get_stuck(self) -> None:
        for room in self.rooms:
            for m in room.members:
                if m.stuck and m.transport is not None:
                    m.transport.pause_reading()

    def _pose_frames(self, fps: int, bits: int) -> list[list[int]]:
        key = (fps, bits)
        if key not in self._frames:
            self._frames[key] = quantized(pose_sequence(60.0, fps, seed=fps), bits)
        return self._frames[key]

    def _report(self, cpu_marks: dict[str, float]) -> list[dict]:
        rec_send = np.frombuffer(self.rec_send, dtype=np.float64)
        rec_lat = np.frombuffer(self.rec_lat, dtype=np.float64)
        stuck_from = min((a for name, a, _ in self.windows if name == "stuck"), default=float("inf"))
        out = []
        for i, (name, a, b) in enumerate(self.windows):
            sel = (rec_send >= a) & (rec_send < b)
            expected = delivered = 0
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
            out.append({
                "name": name, "seconds": b - a, "expected": expected, "delivered": delivered,
                "latency_s": rec_lat[sel].astype(np.float32), "send_t": rec_send[sel],
                "missing_sent_at": np.concatenate(missing_age) if missing_age else np.zeros(0),
                "rx_msgs": self.rx_msgs[i], "rx_bytes": self.rx_bytes[i], "pose_msgs": self.pose_msgs[i],
                "pose_bytes": self.pose_bytes[i],
                "readers": sum(1 for r in self.rooms for m in r.members if not (m.stuck and a >= stuck_from)),
                "cpu_s": cpu_marks.get(name + ":b", 0.0) - cpu_marks.get(name + ":a", 0.0),
                "anomalies": dict(self.anomalies)})
        return out

    async def close(self) -> dict:
        self.closing = True
        for room in self.rooms:
            for m in room.members:
                if m.transport is not None and not m.transport.is_closing():
                    m.transport.resume_reading()
                    m.close()
        await asyncio.sleep(0.2)
        for room in self.rooms:
            for m in room.members:
                if m.transport is not None:
                    m.transport.abort()
        anomalies = dict(self.anomalies)
        self.rooms = []
        return anomalies


def worker_main(conn) -> None:
    """Entry point of a load process (multiprocessing target)."""
    asyncio.run(Worker(conn).serve())
