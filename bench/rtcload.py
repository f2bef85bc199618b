"""A load-generating process of WebRTC participants (aiortc peers on one asyncio loop), driven over a pipe with
the same commands and the same per-window report as bench.loadgen's WebSocket clients, so bench.fanout measures
both transports the same way. Each participant joins as the page does: two data channels ("control" reliable,
"pose" unordered without retransmission), its offer POSTed to the server, JOIN on "control"; then it sends POSE
on "pose" at the tier's rate and timestamps every relayed POSE it receives (BUNDLEs unpacked)."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
from array import array
from collections import Counter

import numpy as np

from bench.loadgen import WindowCounters
from bench.posegen import pose_sequence, quantized
from bench.stats import bucket_drops
from wire import posedata
from wire import protocol as p

DATAGRAM_OVERHEAD = 60          # IP, UDP, DTLS and SCTP around a data-channel message, for kbps_per_receiver


class Room:
    def __init__(self, room_id: str):
        self.room_id = room_id
        self.by_slot: dict[int, RtcParticipant] = {}
        self.members: list[RtcParticipant] = []


class RtcParticipant:
    def __init__(self, worker: RtcWorker, room: Room, user_id: str, token: str, rtc_url: str):
        self.worker, self.room, self.user_id, self.token, self.rtc_url = worker, room, user_id, token, rtc_url
        self.slot: int | None = None
        self.fps, self.bits = 0, 0
        self.stuck, self.closed = False, False
        self.last_idx = [-1] * (p.MAX_SLOT + 1)
        self.sent = array("d")
        self.delivered = array("H")
        self.grid: tuple[float, float] | None = None     # (a moment to send at, the period), from the server's TICK

    async def connect(self, host: str, port: int) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.control = self.pc.createDataChannel("control", ordered=True)
        self.pose = self.pc.createDataChannel("pose", ordered=False, maxRetransmits=0)
        self.control.on("message", self.on_message)
        self.pose.on("message", self.on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"token": self.token, "sdp": self.pc.localDescription.sdp, "type": "offer"}
        status, answer = await asyncio.to_thread(_post, host, port, self.rtc_url, body)
        if status != 200:
            raise RuntimeError(f"offer refused: HTTP {status} {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        opened = asyncio.get_running_loop().create_future()
        self.control.on("open", lambda: opened.done() or opened.set_result(None))
        if self.control.readyState == "open":
            opened.set_result(None)
        await asyncio.wait_for(opened, 15)
        self.control.send(p.encode(p.Join(self.token)))

    # --- receiving ---------------------------------------------------------------------------

    def on_message(self, data: bytes) -> None:
        now, w = time.monotonic(), self.worker
        w.window_bytes(now, len(data) + DATAGRAM_OVERHEAD)
        msg = p.decode_server(data)
        for m in ([p.decode_server(x) for x in msg.messages] if isinstance(msg, p.Bundle) else [msg]):
            self.on_protocol(m, now)

    def on_protocol(self, msg, now: float) -> None:
        w = self.worker
        wi = w.current
        if wi >= 0:
            w.rx_msgs[wi] += 1
        if isinstance(msg, p.Pose):
            if wi >= 0:
                w.pose_msgs[wi] += 1
                w.pose_bytes[wi] += len(msg.data) + 6
            slot, seq = msg.slot, msg.data[1]
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
        elif isinstance(msg, p.Welcome):
            self.slot = msg.slot
            self.room.by_slot[msg.slot] = self
        elif isinstance(msg, p.Tier):
            self.fps, self.bits = msg.fps, msg.bits
            w.last_tier_at = time.monotonic()
        elif isinstance(msg, p.Error):
            w.anomalies[f"ERROR {msg.code}"] += 1
        elif isinstance(msg, p.Bye):
            w.anomalies[f"BYE {msg.code}"] += 1
        elif isinstance(msg, p.Tick):                # send in step with the room's send-outs, as the page does
            period = msg.period_us / 1e6
            self.grid = (now + (msg.next_in_us - msg.lead_us) / 1e6, period)

    # --- sending -----------------------------------------------------------------------------

    def start_sending(self, first: float, period: float, stop: float, frames: list[list[int]], offset: int):
        self.stream = posedata.PoseStream(self.bits, self.fps)
        self.frames, self.offset, self.period, self.stop_at = frames, offset, period, stop
        self.t0, self.k = first, 0
        self.delivered = array("H", bytes(2 * (int(1.2 * (stop - first) / period) + 10)))   # room for in-step sends
        self.worker.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        if self.closed or self.pose.readyState != "open":
            return
        q = self.frames[(self.offset + self.k) % len(self.frames)]
        self.sent.append(time.monotonic())
        self.pose.send(p.encode(p.Pose(self.stream.encode(q))))
        self.k += 1
        nxt = self.t0 + self.k * self.period
        if self.grid is not None and self.worker.aligned:
            origin, period = self.grid
            now = time.monotonic()
            nxt = origin + (int((now + 0.5 * period - origin) / period) + 1) * period
        if nxt < self.stop_at:
            self.worker.loop.call_at(nxt, self._tick)


def _post(host: str, port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


class RtcWorker(WindowCounters):
    def __init__(self, conn):
        self.conn = conn
        self.loop = asyncio.new_event_loop()
        self.rooms: list[Room] = []
        self.anomalies: Counter = Counter()
        self.last_tier_at = 0.0
        self._frames: dict[tuple[int, int], list[list[int]]] = {}
        self._reset([])

    def serve(self) -> None:
        while True:
            cmd = self.conn.recv()
            if cmd[0] == "exit":
                self.conn.send(("ok", None))
                return
            try:
                self.conn.send(("ok", getattr(self, cmd[0])(*cmd[1:])))
            except Exception as exc:
                self.conn.send(("error", f"{exc.__class__.__name__}: {exc}"))

    def connect(self, host: str, port: int, rooms: list, timeout: float = 60.0) -> dict:
        self.rooms, self.anomalies = [], Counter()
        members = []
        for room_id, entries in rooms:
            room = Room(room_id)
            self.rooms.append(room)
            for user_id, token, rtc_url, _stuck in entries:
                member = RtcParticipant(self, room, user_id, token, rtc_url)
                room.members.append(member)
                members.append(member)

        async def all_connect() -> None:
            for i in range(0, len(members), 8):              # a few handshakes at a time
                await asyncio.gather(*(m.connect(host, port) for m in members[i:i + 8]))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(m.fps and m.slot is not None for m in members) and time.monotonic() - self.last_tier_at > 0.5:
                    return
                await asyncio.sleep(0.05)
            raise TimeoutError("clients did not get WELCOME and TIER")
        self.loop.run_until_complete(all_connect())
        return {"clients": len(members), "fps": sorted({m.fps for m in members}),
                "bits": sorted({m.bits for m in members})}

    def run(self, sched: dict) -> list[dict]:
        self._reset(sched["windows"])
        self.aligned = sched.get("aligned", True)
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
        self.loop.run_until_complete(asyncio.sleep(max(0.0, sched["until"] - time.monotonic())))
        return self._report(cpu_marks)

    def _pose_frames(self, fps: int, bits: int) -> list[list[int]]:
        key = (fps, bits)
        if key not in self._frames:
            self._frames[key] = quantized(pose_sequence(60.0, fps, seed=fps), bits)
        return self._frames[key]

    def _report(self, cpu_marks: dict) -> list[dict]:
        rec_send = np.frombuffer(self.rec_send, dtype=np.float64)
        rec_lat = np.frombuffer(self.rec_lat, dtype=np.float64)
        out = []
        for i, (name, a, b) in enumerate(self.windows):
            sel = (rec_send >= a) & (rec_send < b)
            expected = delivered = lost_all = lost_some = paced_out = 0
            missing = []
            for room in self.rooms:
                for s in room.members:
                    t = np.frombuffer(s.sent, dtype=np.float64)
                    idx = np.nonzero((t >= a) & (t < b))[0]
                    readers = len(room.members) - 1
                    got = np.frombuffer(s.delivered, dtype=np.uint16)[idx].astype(np.int64)
                    expected += readers * len(idx)
                    delivered += int(got.sum())
                    missing.append(np.repeat(t[idx], np.maximum(readers - got, 0)))
                    lost_all += int((got == 0).sum())
                    lost_some += int(((got > 0) & (got < readers)).sum())
                    paced_out += sum(1 for j in bucket_drops(s.sent, s.fps) if a <= s.sent[j] < b)
            out.append({
                "name": name, "seconds": b - a, "expected": expected, "delivered": delivered,
                "latency_s": rec_lat[sel].astype(np.float32), "send_t": rec_send[sel],
                "missing_sent_at": np.concatenate(missing) if missing else np.zeros(0),
                "frames_lost_for_all": lost_all, "frames_lost_for_some": lost_some,
                "frames_over_rate_as_sent": paced_out, "frames_lost_for_all_sent_by_stuck": 0,
                "rx_msgs": self.rx_msgs[i], "rx_reads": self.rx_reads[i], "rx_bytes": self.rx_bytes[i],
                "pose_msgs": self.pose_msgs[i], "pose_bytes": self.pose_bytes[i],
                "readers": sum(len(r.members) for r in self.rooms),
                "cpu_user_s": cpu_marks[name + ":b"][0] - cpu_marks[name + ":a"][0],
                "cpu_sys_s": cpu_marks[name + ":b"][1] - cpu_marks[name + ":a"][1],
                "anomalies": dict(self.anomalies), "stuck_queues": {}})
        return out

    def close(self) -> dict:
        async def close_all() -> None:
            for m in (m for r in self.rooms for m in r.members):
                m.closed = True
            await asyncio.gather(*(m.pc.close() for r in self.rooms for m in r.members), return_exceptions=True)
        self.loop.run_until_complete(close_all())
        anomalies, self.rooms = dict(self.anomalies), []
        return anomalies


def worker_main(conn) -> None:
    """Entry point of a WebRTC load process (multiprocessing target)."""
    RtcWorker(conn).serve()
