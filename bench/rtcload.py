"""A load-generating process of WebRTC participants (aiortc peers on one asyncio loop), driven over a pipe with
the same commands and the same per-window report as bench.loadgen's WebSocket clients, so bench.fanout measures
both transports the same way. Each participant joins as the page does: two data channels ("control" reliable,
"pose" unordered without retransmission), its offer POSTed to the server, JOIN on "control"; then it sends POSE
on "pose" at the tier's rate and timestamps every relayed POSE it receives (BUNDLEs unpacked)."""
from __future__ import annotations

import asyncio
import http.client
import json
import time
from array import array
from collections import Counter
from collections.abc import Callable

from bench.loadgen import LoadWorker, PoseCounting
from wire import posedata
from wire import protocol as p

DATAGRAM_OVERHEAD = 60          # IP, UDP, DTLS and SCTP around a data-channel message, for kbps_per_receiver


class Room:
    def __init__(self, room_id: str):
        self.room_id = room_id
        self.by_slot: dict[int, RtcParticipant] = {}
        self.members: list[RtcParticipant] = []


class RtcParticipant(PoseCounting):
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
        self.pc, self.control, self.pose = await join_rtc(lambda url, body: _post(host, port, url, body),
                                                          self.rtc_url, self.token, self.on_message)

    # --- receiving ---------------------------------------------------------------------------

    def on_message(self, data: bytes) -> None:
        now, w = time.monotonic(), self.worker
        w.window_bytes(now, len(data) + DATAGRAM_OVERHEAD)
        for m in p.unbundle(data):
            self.on_protocol(m, now)

    def on_protocol(self, msg, now: float) -> None:
        w = self.worker
        if w.current >= 0:
            w.rx_msgs[w.current] += 1
        if isinstance(msg, p.Pose):
            self.count_pose(msg.slot, msg.data[1], len(msg.data) + 6, now)
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
            self.grid = (now + (msg.next_in_us - msg.lead_us) / 1e6, msg.period_us / 1e6)

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
        nxt = self.t0 + self.k * self.period if self.grid is None else next_on_grid(time.monotonic(), *self.grid)
        if nxt < self.stop_at:
            self.worker.loop.call_at(nxt, self._tick)


async def join_rtc(post: Callable[[str, dict], tuple[int, dict]], url: str, token: str,
                   on_message: Callable) -> tuple:
    """Join a room over WebRTC as the page does: two data channels ("control" reliable and ordered, "pose"
    unordered without retransmission), the offer POSTed to `url` (with `post(url, body)` -> (status, answer), run
    in a thread), JOIN on "control" once it opens. Returns (peer connection, control, pose)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    control = pc.createDataChannel("control", ordered=True)
    pose = pc.createDataChannel("pose", ordered=False, maxRetransmits=0)
    control.on("message", on_message)
    pose.on("message", on_message)
    await pc.setLocalDescription(await pc.createOffer())
    body = {"token": token, "sdp": pc.localDescription.sdp, "type": "offer"}
    status, answer = await asyncio.to_thread(post, url, body)
    if status != 200:
        raise RuntimeError(f"offer refused: HTTP {status} {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    opened = asyncio.get_running_loop().create_future()
    control.on("open", lambda: opened.done() or opened.set_result(None))
    if control.readyState == "open":
        opened.set_result(None)
    await asyncio.wait_for(opened, 15)
    control.send(p.encode(p.Join(token)))
    return pc, control, pose


def next_on_grid(now: float, origin: float, period: float) -> float:
    """When to send next in step with the server's send-outs (`origin` + k periods, from its TICK), as the page
    does: the next grid point at least half a period away."""
    return origin + (int((now + 0.5 * period - origin) / period) + 1) * period


def _post(host: str, port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


class RtcWorker(LoadWorker):
    def __init__(self, conn):
        self.conn = conn
        self.loop = asyncio.new_event_loop()
        self.rooms: list[Room] = []
        self.anomalies: Counter = Counter()
        self.last_tier_at = 0.0
        self._frames: dict[tuple[int, int], list[list[int]]] = {}
        self.stuck_queues: dict = {}                   # (no stuck readers over WebRTC)
        self._reset([])

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
        cpu_marks = self._start(sched)
        self.loop.run_until_complete(asyncio.sleep(max(0.0, sched["until"] - time.monotonic())))
        return self._report(cpu_marks)

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
