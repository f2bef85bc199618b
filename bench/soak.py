"""Soak: a server under churn for a while — joins, clean leaves, dropped connections that resume, fresh rejoins
and pose traffic — watched for growth in memory, threads and open files, and for lost frames.

    .venv/bin/python -m bench.soak --minutes 10 --json

One gunicorn server (as production runs it). Each room has steady participants, who stay for the whole run
and number their pose frames, and churners, who come and go: every `--churn-every` seconds one churner leaves
cleanly, drops its connection without a close and resumes with its WELCOME's token, or joins again. Every
few seconds the worker's resident memory, threads and open descriptors are read from /proc; after a warm-up the
slopes of a least-squares line through them are the growth per hour. `lost_frames` counts frames a steady
participant sent that another steady participant never got (pose frames are latest-wins, so at this light load
every one should arrive); `errors` counts ERROR messages, unexpected closes and error lines in the server log.
The last line of stdout is {"rss_mb_per_hour", "threads_per_hour", "fds_per_hour", "lost_frames", "errors", …}.
Goal: slopes within noise (|rss| ≤ 20 MB/hour) and nothing lost.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time

import numpy as np

from bench.server import GunicornServer
from bench.stats import machine
from wire import posedata
from wire import protocol as p


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Member:
    """One participant's WebSocket; steady ones number their frames and check what they get."""

    def __init__(self, soak: Soak, room: str, user: str, steady: bool):
        self.soak, self.room, self.user, self.steady = soak, room, user, steady
        self.ws = None
        self.slot: int | None = None
        self.resume = ""
        self.reader: asyncio.Task | None = None
        self.welcomed = asyncio.Event()
        self.seq = 0

    async def join(self, token: str | None = None) -> None:
        from websockets.asyncio.client import connect
        if token is None:
            status, body = await asyncio.to_thread(self.soak.server.request, "POST", "/api/meeting/join",
                                                   {"room_id": self.room, "user_id": self.user})
            if status != 200:
                self.soak.error(f"join {self.user}: HTTP {status} {body}")
                return
            token = body["token"]
        self.welcomed.clear()
        self.ws = await connect(f"{self.soak.server.ws_url}/ws/meeting/{self.room}", compression=None,
                                ping_interval=None, max_queue=None)
        self.reader = asyncio.get_running_loop().create_task(self._read(self.ws))
        await self.ws.send(p.encode(p.Join(token)))
        await asyncio.wait_for(self.welcomed.wait(), 10)

    async def _read(self, ws) -> None:
        try:
            async for data in ws:
                msg = p.decode_server(data)
                if isinstance(msg, p.Welcome):
                    self.slot, self.resume = msg.slot, msg.resume
                    self.welcomed.set()
                elif isinstance(msg, p.Pose) and self.steady:
                    self.soak.received(self, msg.slot, msg.data)
                elif isinstance(msg, p.Error):
                    self.soak.error(f"{self.user}: ERROR {msg.code} {msg.message}")
        except Exception:
            pass
        if ws.close_code not in (None, 1000, 1006) and ws is self.ws:
            self.soak.error(f"{self.user}: closed {ws.close_code} {ws.close_reason}")

    async def send_pose(self) -> None:
        if self.ws is None or not self.welcomed.is_set():
            return
        self.seq = (self.seq + 1) % 256
        frame = posedata.encode_key(posedata.quantize({"yaw": self.seq / 300}, 6), 6, 1, self.seq)
        try:
            await self.ws.send(p.encode(p.Pose(frame)))
        except Exception:
            return
        if self.steady:
            self.soak.sent(self)

    async def leave(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()

    async def drop(self) -> None:
        """The network goes: the socket ends without a close frame."""
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            ws.transport.abort()


class Soak:
    def __init__(self, server: GunicornServer, args):
        self.server, self.args = server, args
        self.members: list[Member] = []
        self.expected: dict[tuple[str, str], int] = {}     # (receiver, sender) -> frames sent while both steady
        self.got: dict[tuple[str, str], int] = {}
        self.by_slot: dict[tuple[str, int], Member] = {}
        self.errors: list[str] = []
        self.counts = {"joins": 0, "leaves": 0, "drops": 0, "resumes": 0}

    def error(self, what: str) -> None:
        self.errors.append(what)
        if len(self.errors) <= 10:
            log(f"error: {what}")

    def sent(self, sender: Member) -> None:
        for m in self.members:
            if m.steady and m is not sender and m.room == sender.room:
                self.expected[(m.user, sender.user)] = self.expected.get((m.user, sender.user), 0) + 1

    def received(self, receiver: Member, slot: int, data: bytes) -> None:
        sender = self.by_slot.get((receiver.room, slot))
        if sender is not None and sender.steady:
            key = (receiver.user, sender.user)
            self.got[key] = self.got.get(key, 0) + 1

    async def run(self) -> dict:
        a = self.args
        for r in range(a.rooms):
            room = f"soak-{r}-{random.randrange(1 << 20):x}"
            await asyncio.to_thread(self.server.create_room, room, "owner", a.steady + a.churners)
            for i in range(a.steady + a.churners):
                m = Member(self, room, f"r{r}u{i}", steady=i < a.steady)
                self.members.append(m)
                await m.join()
                self.by_slot[(room, m.slot)] = m
        log(f"{len(self.members)} participants in {a.rooms} rooms")
        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        samples, next_sample = [], t0 + a.warmup
        senders = asyncio.get_running_loop().create_task(self._traffic(end))
        while (now := time.monotonic()) < end:
            await self._churn()
            if now >= next_sample:
                samples.append((now - t0, *self._proc()))
                next_sample = now + a.sample_every
            await asyncio.sleep(a.churn_every)
        await senders
        await asyncio.sleep(1.0)                            # the last frames arrive
        for m in self.members:
            await m.leave()
        return self._figures(samples)

    async def _traffic(self, end: float) -> None:
        period = 1.0 / self.args.fps
        while time.monotonic() < end:
            await asyncio.gather(*(m.send_pose() for m in self.members))
            await asyncio.sleep(period)

    async def _churn(self) -> None:
        m = random.choice([m for m in self.members if not m.steady])
        action = "join" if m.ws is None else random.choice(("leave", "drop"))
        try:
            if action == "join":
                await m.join()
                self.counts["joins"] += 1
            elif action == "leave":
                await m.leave()
                self.counts["leaves"] += 1
            else:
                await m.drop()
                self.counts["drops"] += 1
                await asyncio.sleep(random.uniform(0.1, 1.0))
                action = "resume"
                await m.join(m.resume)                      # back in its place with the resume token
                self.counts["resumes"] += 1
            if m.slot is not None:
                self.by_slot[(m.room, m.slot)] = m
        except Exception as exc:
            ws = m.ws
            self.error(f"{action} {m.user}: {type(exc).__name__}: {exc} (close {ws and ws.close_code} "
                       f"{ws and ws.close_reason})")
            await m.leave()

    def _proc(self) -> tuple[float, int, int]:
        pid = self.server.worker_pid()
        status = open(f"/proc/{pid}/status").read()
        rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
        threads = int(next(line for line in status.splitlines() if line.startswith("Threads")).split()[1])
        return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))

    def _figures(self, samples: list[tuple]) -> dict:
        arr = np.array(samples, dtype=float)
        hours = arr[:, 0] / 3600

        def slope(col: int) -> float | None:
            return round(float(np.polyfit(hours, arr[:, col], 1)[0]), 2) if len(arr) >= 3 else None
        lost = sum(max(0, n - self.got.get(key, 0)) for key, n in self.expected.items())
        log_errors = self.server.log_problems()
        return {"rss_mb_per_hour": slope(1), "threads_per_hour": slope(2), "fds_per_hour": slope(3),
                "lost_frames": lost, "frames_expected": sum(self.expected.values()),
                "errors": len(self.errors) + log_errors["error_lines"],
                "error_samples": self.errors[:5] + log_errors["first"][:5],
                "rss_mb": [round(arr[0, 1], 1), round(arr[-1, 1], 1)] if len(arr) else None,
                "threads": [int(arr[0, 2]), int(arr[-1, 2])] if len(arr) else None,
                "fds": [int(arr[0, 3]), int(arr[-1, 3])] if len(arr) else None,
                "samples": len(arr), **self.counts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rooms", type=int, default=2)
    ap.add_argument("--steady", type=int, default=4, help="participants per room who stay and check their frames")
    ap.add_argument("--churners", type=int, default=6, help="participants per room who come and go")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--churn-every", type=float, default=0.5)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds before the first sample")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    server = GunicornServer("run:create_app()", 200, {"AVATAR_HOST_ENABLED": "0", "AVATAR_RESUME_GRACE": "5"}).start()
    t0 = time.monotonic()
    try:
        out = asyncio.run(Soak(server, args).run())
    finally:
        server.stop()
    out.update(minutes=args.minutes, config={k: getattr(args, k) for k in ("rooms", "steady", "churners", "fps",
                                                                          "churn_every")},
               machine=machine(), elapsed_s=round(time.monotonic() - t0, 1))
    log(f"rss {out['rss_mb_per_hour']} MB/h, threads {out['threads_per_hour']}/h, fds {out['fds_per_hour']}/h, "
        f"lost {out['lost_frames']} of {out['frames_expected']}, errors {out['errors']}")
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
