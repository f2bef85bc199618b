"""What PoseData costs against the camera video it replaces, for the same head motion, in one run.

    .venv/bin/python -m bench.bandwidth --json

The pose stream is encoded as the browser client does (8 bits, key frame every second, deltas against it),
sent through the real server (gunicorn) to a receiver that counts the bytes of every relayed POSE message
(WebSocket frame header included); a second receiver joins mid-sequence to time how soon it draws the
right face. The same motion moves the astronaut photo in 640x480 frames encoded by ffmpeg/libx264.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from skimage import data as skdata

from bench import stats
from bench.posegen import pose_sequence, quantized
from bench.server import GunicornServer
from bench.wsclient import Connection, EventLoop, open_websocket
from wire import posedata
from wire import protocol as p

SLOT = 1                                  # a slot for the computed sizes (any slot 0-63 is one byte)


def log(msg: str) -> None:
    print(f"[bandwidth {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ws_frame_len(n: int) -> int:
    """On-wire size of an unmasked server-to-client frame with an n-byte payload."""
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


def encode_stream(values: np.ndarray, bits: int, key_every: int) -> tuple[list[bytes], list[list[int]]]:
    qs = quantized(values, bits)
    stream = posedata.PoseStream(bits, key_every)
    return [stream.encode(q) for q in qs], qs


class FaceDecoder:
    """A receiver's view of one sender: keys by key id; deltas whose key it has not seen are ignored."""

    def __init__(self):
        self.keys: dict[int, list[int]] = {}
        self.face: list[int] | None = None

    def feed(self, payload: bytes) -> bool:
        head = posedata.read_header(payload)
        if head.key:
            _, q = posedata.decode(payload)
            self.keys[head.key_id] = q
        elif head.key_id in self.keys:
            _, q = posedata.decode(payload, self.keys[head.key_id])
        else:
            return False
        self.face = q
        return True


def codec_recovery(payloads: list[bytes], qs: list[list[int]], fps: float) -> dict:
    """Start a receiver at every frame (no help from the server): how long until it draws the right face,
    and whether every face after that is exact."""
    worst, wrong = 0, 0
    for start in range(1, len(payloads)):
        dec, first = FaceDecoder(), None
        for i in range(start, min(len(payloads), start + int(2 * fps) + 1)):
            if dec.feed(payloads[i]):
                first = i if first is None else first
                wrong += dec.face != qs[i]
        if first is None:
            continue                       # the sequence ends before the next key frame
        worst = max(worst, first - start)
    return {"max_recovery_ms": round(worst / fps * 1000, 1), "wrong_faces_after_recovery": wrong}


class Receiver(Connection):
    """Counts relayed POSE bytes, checks them against what the sender sent, and rebuilds the face."""

    def __init__(self, sock, leftover: bytes, expected: dict[int, bytes]):
        super().__init__(sock, leftover)
        self.expected = expected           # seq -> the relayed message the server should send
        self.pose_bytes = self.pose_msgs = self.mismatched = 0
        self.slot: int | None = None
        self.tier: p.Tier | None = None
        self.welcomed_at = 0.0
        self.decoder = FaceDecoder()
        self.first_face: tuple[float, int, list[int]] | None = None   # (time, seq, face) of the first face

    def on_binary(self, buf, s: int, n: int, now: float) -> None:
        raw = bytes(buf[s:s + n])
        msg = p.decode_server(raw)
        if isinstance(msg, p.Pose):
            self.pose_msgs += 1
            self.pose_bytes += ws_frame_len(n)
            seq = msg.data[1]
            if self.expected.get(seq) != raw:
                self.mismatched += 1
            if self.decoder.feed(msg.data) and self.first_face is None:
                self.first_face = (now, seq, list(self.decoder.face))
        elif isinstance(msg, p.Welcome):
            self.slot, self.welcomed_at = msg.slot, now
        elif isinstance(msg, p.Tier):
            self.tier = msg


def _connect(server: GunicornServer, loop: EventLoop, join: dict, expected: dict[int, bytes]) -> Receiver:
    sock, rest = open_websocket("127.0.0.1", server.port, join["ws_url"])
    conn = Receiver(sock, b"", expected)
    loop.add(conn)
    if rest:
        conn.feed(rest, time.monotonic())
    conn.send(p.encode(p.Join(join["token"])))
    return conn


def relay_through_server(payloads: list[bytes], qs: list[list[int]], fps: float, late_at: float) -> dict:
    """Send the stream through the real server to one receiver; a second receiver joins at `late_at` s."""
    server = GunicornServer("run:create_app()", 64).start()
    loop = EventLoop()
    try:
        room_id = "bandwidth"
        server.create_room(room_id, "sender", 4)
        joins = {u: server.join(room_id, u) for u in ("sender", "receiver", "late")}
        expected: dict[int, bytes] = {}
        sender = _connect(server, loop, joins["sender"], {})
        receiver = _connect(server, loop, joins["receiver"], expected)
        if not loop.run_until(time.monotonic() + 10, lambda: sender.tier and receiver.tier and sender.slot is not None):
            raise TimeoutError("no WELCOME and TIER")
        late: list[Receiver] = []
        sent_at: list[float] = []
        t0 = time.monotonic() + 0.2

        def send(i: int) -> None:
            expected[payloads[i][1]] = p.relay_pose(payloads[i], sender.slot)
            sent_at.append(time.monotonic())
            sender.send(p.encode(p.Pose(payloads[i])))

        for i in range(len(payloads)):
            loop.call_at(t0 + i / fps, lambda i=i: send(i))
        loop.call_at(t0 + late_at, lambda: late.append(_connect(server, loop, joins["late"], expected)))
        loop.run_until(t0 + len(payloads) / fps + 0.5)
        out = {"received_frames": receiver.pose_msgs, "pose_bytes": receiver.pose_bytes,
               "over_rate_as_sent": len(stats.bucket_drops(sent_at, fps)),
               "mismatched": receiver.mismatched, "tier": [receiver.tier.fps, receiver.tier.bits]}
        if late and late[0].first_face is not None:
            t, seq, face = late[0].first_face
            idx = max(i for i in range(len(sent_at)) if payloads[i][1] == seq and sent_at[i] <= t)
            out["late_join_recovery_ms"] = round((t - late[0].welcomed_at) * 1000, 2)
            out["late_join_face_correct"] = face == qs[idx]
        for conn in [sender, receiver, *late]:
            conn.close()
            conn.sock.close()
        return out
    finally:
        loop.close()
        server.stop()


def head_frame(photo: np.ndarray, v: dict[str, float], size=(640, 480)) -> np.ndarray:
    """The photo moved like the head: roll rotates, x/y and yaw/pitch translate, z scales."""
    w, h = size
    scale = (h / photo.shape[0]) * (1.0 + 0.5 * v["z"])
    cx = w / 2 + v["x"] * w / 2 + 160 * math.sin(v["yaw"])
    cy = h / 2 - v["y"] * h / 2 - 160 * math.sin(v["pitch"])
    m = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), -math.degrees(v["roll"]), scale)
    m[0, 2] += cx - photo.shape[1] / 2
    m[1, 2] += cy - photo.shape[0] / 2
    return cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def h264_size(values: np.ndarray, fps: float, crf: int, workdir: pathlib.Path) -> tuple[int, pathlib.Path]:
    photo = skdata.astronaut()
    out = workdir / "camera.h264"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", "640x480", "-r", str(fps), "-i", "pipe:", "-c:v", "libx264", "-preset", "veryfast",
           "-tune", "zerolatency", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "h264", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for row in values:
        proc.stdin.write(head_frame(photo, dict(zip(posedata.FIELD_NAMES, row.tolist()))).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed")
    return out.stat().st_size, out


def run(args) -> dict:
    values = pose_sequence(args.seconds, args.fps, seed=args.seed, noise=args.noise)
    payloads, qs = encode_stream(values, args.bits, int(args.fps))
    frames = len(payloads)
    computed = sum(ws_frame_len(len(p.relay_pose(d, SLOT))) for d in payloads)
    keys = [len(d) for d in payloads if d[0] & posedata.KEY_FLAG]
    deltas = [len(d) for d in payloads if not d[0] & posedata.KEY_FLAG]
    out = {"frames": frames, "fps": args.fps, "seconds": args.seconds, "bits": args.bits, "key_every": int(args.fps),
           "pose_bytes_computed": computed, "pose_payload_bytes_per_frame": round(sum(map(len, payloads)) / frames, 2),
           "key_payload_bytes": round(float(np.mean(keys)), 2), "delta_payload_bytes": round(float(np.mean(deltas)), 2),
           "deltas_not_smaller_than_a_key": sum(d >= keys[0] for d in deltas)}
    out.update(codec_recovery(payloads, qs, args.fps))
    pose_bytes, source = computed, "computed"
    if not args.no_server:
        log(f"sending {frames} pose frames through the real server at {args.fps} fps ({args.seconds} s)")
        relayed = relay_through_server(payloads, qs, args.fps, args.seconds / 2 + 0.37)
        out["over_server"] = relayed
        if relayed["received_frames"] == frames:
            pose_bytes, source = relayed["pose_bytes"], "server"
        else:
            log(f"only {relayed['received_frames']} of {frames} frames came back: pose_bytes is the codec's count")
    log("encoding the camera video with libx264")
    with tempfile.TemporaryDirectory(prefix="bench-bw-") as tmp:
        h264_bytes, _ = h264_size(values, args.fps, args.crf, pathlib.Path(tmp))
    out.update(pose_bytes=pose_bytes, pose_bytes_source=source, h264_bytes=h264_bytes, ratio=round(h264_bytes / pose_bytes, 1),
               pose_kbps=round(pose_bytes * 8 / 1000 / args.seconds, 2),
               h264_kbps=round(h264_bytes * 8 / 1000 / args.seconds, 1),
               pose_bytes_per_frame=round(pose_bytes / frames, 2), crf=args.crf, machine=stats.machine())
    if out["ratio"] < 100:
        target = h264_bytes / 100 / frames
        out["needed_pose_bytes_per_frame"] = round(target, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.002, help="tracker noise in field units")
    ap.add_argument("--no-server", action="store_true", help="count with the codec only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = run(args)
    log(f"pose {out['pose_bytes']} B ({out['pose_kbps']} kbps) vs h264 {out['h264_bytes']} B ({out['h264_kbps']} kbps):"
        f" ratio {out['ratio']}")
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
