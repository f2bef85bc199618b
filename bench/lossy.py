"""One room of 8 over a link that loses packets at random: how fresh the faces stay, over WebRTC and over the
WebSocket.

    sudo .venv/bin/python -m bench.lossy --json

The server runs in a network namespace of its own ("avs", 10.77.0.1) and the participants in another ("avc",
10.77.0.2), joined by a veth pair; in the participants' namespace an nftables rule drops N % of the packets
in each direction (`numgen random mod 100 < N drop`; this kernel has no netem). For each loss rate and each
transport, 8 participants join one room (tier: 20 fps) and send poses as the page does (over WebRTC in step
with the server's TICK), and at random moments every receiver's newest pose of every sender is looked at:
its age (now minus when it was sent) and, per frame period, whether the receiver got anything from that
sender. The last line of stdout is {"frame_period_ms", "results": [{"transport", "loss_pct", "age_p50_ms",
"age_p99_ms", "empty_period_ratio", …}, …]}. Needs root (namespaces, nftables); says so and exits otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np

from bench.posegen import pose_sequence, quantized
from bench.rtcload import join_rtc, next_on_grid
from bench.stats import machine
from wire import posedata
from wire import protocol as p

SERVER_NS, CLIENT_NS = "avs", "avc"
SERVER_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
PORT = 8077
PARTICIPANTS = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


# --- the two namespaces (outside) ------------------------------------------------------------

def can_run() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian: iproute2, nftables)"
    probe = sh("ip", "netns", "add", "avprobe", check=False)
    sh("ip", "netns", "del", "avprobe", check=False)
    return None if probe.returncode == 0 else f"network namespaces are not allowed here: {probe.stderr.strip()}"


def setup() -> None:
    teardown()
    for ns in (SERVER_NS, CLIENT_NS):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "veth-avs", "netns", SERVER_NS, "type", "veth", "peer", "name", "veth-avc", "netns",
       CLIENT_NS)
    for ns, dev, ip in ((SERVER_NS, "veth-avs", SERVER_IP), (CLIENT_NS, "veth-avc", CLIENT_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")


def teardown() -> None:
    for ns in (SERVER_NS, CLIENT_NS):
        sh("ip", "netns", "del", ns, check=False)


def set_loss(pct: int) -> None:
    """Drop `pct` % of the packets the participants' namespace sends and receives."""
    sh("ip", "netns", "exec", CLIENT_NS, "nft", "delete", "table", "inet", "lossy", check=False)
    if pct:
        rules = (f"table inet lossy {{\n chain in {{\n type filter hook input priority 0;\n"
                 f" iifname \"veth-avc\" numgen random mod 100 < {pct} drop\n }}\n chain out {{\n"
                 f" type filter hook output priority 0;\n oifname \"veth-avc\" numgen random mod 100 < {pct} drop\n }}\n}}\n")
        sh("ip", "netns", "exec", CLIENT_NS, "nft", "-f", "-", input=rules)


def start_server() -> subprocess.Popen:
    env = dict(os.environ, AVATAR_BIND=f"{SERVER_IP}:{PORT}", AVATAR_SECRET_KEY="lossy-secret-of-at-least-32-bytes-00",
               AVATAR_LOG_LEVEL="warning", AVATAR_HOST_ENABLED="0", AVATAR_GUNICORN_THREADS="64")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    return subprocess.Popen(["ip", "netns", "exec", SERVER_NS, gunicorn, "-c", "gunicorn.conf.py", "run:create_app()"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the participants (inside their namespace) ----------------------------------------------

BASE = f"http://{SERVER_IP}:{PORT}"


def api(method: str, path: str, body: dict | None = None) -> dict:
    """The server's API, retried: the lossy link loses HTTP packets too (TCP recovers, slowly)."""
    for attempt in range(5):
        try:
            req = urllib.request.Request(BASE + path, data=json.dumps(body).encode() if body is not None else None,
                                         method=method, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as resp:
                return json.loads(resp.read())
        except OSError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


class Meeting:
    """The room's senders and what every receiver holds of them."""

    def __init__(self, n: int):
        self.sent: list[list[float]] = [[] for _ in range(n)]        # by bench index: send time of each frame
        self.slot_of: dict[int, int] = {}                             # server slot -> bench index
        self.newest = np.full((n, n), -1, dtype=np.int64)             # receiver, sender -> newest frame index
        self.last_seq = np.full((n, n), -1, dtype=np.int64)
        self.arrivals: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(n)]

    def received(self, receiver: int, slot: int, seq: int) -> None:
        sender = self.slot_of.get(slot)
        if sender is None:
            return
        last = self.last_seq[receiver, sender]
        idx = seq if last < 0 else last + ((seq - last) & 0xFF)
        if (seq - last) & 0xFF > 0x80 and last >= 0:                  # an old frame arriving late
            return
        self.last_seq[receiver, sender] = idx
        if idx < len(self.sent[sender]):
            self.newest[receiver, sender] = max(self.newest[receiver, sender], idx)
            self.arrivals[receiver][sender].append(time.monotonic())


class Client:
    def __init__(self, meeting: Meeting, index: int, transport: str, room_id: str):
        self.meeting, self.index, self.transport, self.room_id = meeting, index, transport, room_id
        self.fps, self.bits, self.grid = 0, 0, None

    async def join(self) -> None:
        body = await asyncio.to_thread(api, "POST", "/api/meeting/join", {"room_id": self.room_id,
                                                                         "user_id": f"u{self.index}"})
        self.token = body["token"]
        if self.transport == "rtc":
            self.pc, self.control, self.pose = await join_rtc(lambda path, b: (200, api("POST", path, b)),
                                                              body["rtc"]["url"], self.token, self._on_data)
        else:
            from websockets.asyncio.client import connect
            self.ws = await connect(f"ws://{SERVER_IP}:{PORT}{body['ws_url']}", compression=None, max_size=None)
            asyncio.get_running_loop().create_task(self._ws_reader())
            await self.ws.send(p.encode(p.Join(self.token)))

    async def _ws_reader(self) -> None:
        try:
            async for data in self.ws:
                self._on_data(data)
        except Exception:
            pass

    def _on_data(self, data: bytes) -> None:
        for m in p.unbundle(data):
            if isinstance(m, p.Pose):
                self.meeting.received(self.index, m.slot, m.data[1])
            elif isinstance(m, p.Welcome):
                self.meeting.slot_of[m.slot] = self.index
            elif isinstance(m, p.Tier):
                self.fps, self.bits = m.fps, m.bits
            elif isinstance(m, p.Tick):
                self.grid = (time.monotonic() + (m.next_in_us - m.lead_us) / 1e6, m.period_us / 1e6)

    async def send_poses(self, until: float, frames: list) -> None:
        stream, period = posedata.PoseStream(self.bits, self.fps), 1.0 / self.fps
        await asyncio.sleep(random.random() * period)
        k = 0
        while (now := time.monotonic()) < until:
            data = p.encode(p.Pose(stream.encode(frames[(37 * self.index + k) % len(frames)])))
            self.meeting.sent[self.index].append(now)
            if self.transport == "rtc":
                if self.pose.readyState == "open":
                    self.pose.send(data)
            else:
                await self.ws.send(data)
            k += 1
            nxt = now + period if self.grid is None else next_on_grid(now, *self.grid)   # in step, as the page
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def close(self) -> None:
        try:
            await (self.pc.close() if self.transport == "rtc" else self.ws.close())
        except Exception:
            pass


async def measure(transport: str, loss: int, seconds: float, warmup: float) -> dict:
    room_id = f"lossy-{transport}-{loss}-{random.randrange(1 << 30):x}"
    await asyncio.to_thread(api, "POST", "/api/meeting/create", {"user_id": "o", "room_id": room_id, "host": False})
    meeting = Meeting(PARTICIPANTS)
    clients = [Client(meeting, i, transport, room_id) for i in range(PARTICIPANTS)]
    for c in clients:
        await asyncio.wait_for(c.join(), 60)
    while not all(c.fps for c in clients) or len(meeting.slot_of) < PARTICIPANTS:
        await asyncio.sleep(0.05)
    fps = clients[0].fps
    frames = quantized(pose_sequence(30.0, fps, seed=7), clients[0].bits)
    start = time.monotonic() + warmup
    end = start + seconds
    senders = [asyncio.get_running_loop().create_task(c.send_poses(end, frames)) for c in clients]
    ages = []
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    while (now := time.monotonic()) < end:               # look at random moments (Poisson, 100 a second)
        for r in range(PARTICIPANTS):
            for s in range(PARTICIPANTS):
                idx = meeting.newest[r, s]
                if r != s and idx >= 0:
                    ages.append(now - meeting.sent[s][idx])
        await asyncio.sleep(random.expovariate(100.0))
    await asyncio.gather(*senders)
    period = 1.0 / fps
    empty = total = 0
    for r in range(PARTICIPANTS):
        for s in range(PARTICIPANTS):
            if r == s:
                continue
            # Frame periods with nothing from s, counted from the gaps between arrivals (independent of where
            # period boundaries fall: tick-aligned arrivals all land at the same phase): a gap of k periods
            # (rounded) means k - 1 empty ones.
            times = [start] + sorted(t for t in meeting.arrivals[r][s] if start <= t < end) + [end]
            empty += sum(max(0, round((b - a) / period) - 1) for a, b in zip(times, times[1:]))
            total += int(seconds / period)
    for c in clients:
        await c.close()
    a = np.array(ages) * 1000
    return {"transport": transport, "loss_pct": loss, "age_p50_ms": round(float(np.percentile(a, 50)), 1),
            "age_p99_ms": round(float(np.percentile(a, 99)), 1), "age_max_ms": round(float(a.max()), 1),
            "empty_period_ratio": round(empty / total, 4), "samples": len(a), "fps": fps}


def inside(args) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            api("GET", "/api/meeting")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    results = []
    for loss in args.loss:
        set_loss(loss)
        for transport in args.transports:
            r = asyncio.run(measure(transport, loss, args.seconds, args.warmup))
            log(f"{transport} at {loss} % loss: age p50 {r['age_p50_ms']} p99 {r['age_p99_ms']} ms, "
                f"empty periods {r['empty_period_ratio']}")
            results.append(r)
        set_loss(0)
    print(json.dumps(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loss", type=int, nargs="+", default=[0, 2, 5, 10])
    ap.add_argument("--transports", nargs="+", default=["rtc", "ws"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside(args)
        return
    why = can_run()
    if why:
        print(f"bench.lossy skipped: {why}", file=sys.stderr)
        print(json.dumps({"skipped": why}))
        return
    setup()
    server = start_server()
    try:
        cmd = ["ip", "netns", "exec", CLIENT_NS, sys.executable, "-m", "bench.lossy", "--inside", "--seconds",
               str(args.seconds), "--warmup", str(args.warmup), "--loss", *map(str, args.loss), "--transports",
               *args.transports]
        out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        results = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
        teardown()
    fps = results[0]["fps"] if results else 20
    summary = {"frame_period_ms": round(1000 / fps, 1), "results": results, "participants": PARTICIPANTS,
               "seconds": args.seconds, "machine": machine()}
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
