"""What a recording costs: a room of 16 recorded for a simulated time (16 synthetic talking heads at the tier
the room would have, 10 fps and 6 bits, key frames as the page sends them; the AI host speaking a share of the
time at the configured Opus bitrate; some chat), written by the real Recorder (no server: the clock is
simulated, so an hour takes seconds). Prints MB per room-hour, with and without the host's voice, beside the
pose traffic's own bytes.

    python -m bench.recording --minutes 10 --json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

from bench.posegen import pose_sequence, quantized
from config import DEFAULTS
from meeting.recording import RecordingStore, read
from wire import posedata
from wire import protocol as p


def simulate(minutes: float, people: int, speaking_share: float, fps: int = 10, bits: int = 6,
             audio_bitrate: int = DEFAULTS.AUDIO_BITRATE, chat_every_s: float = 20.0) -> dict:
    seconds = minutes * 60
    directory = tempfile.mkdtemp(prefix="avatar-rec-bench-")
    store = RecordingStore(directory, 1 << 40)
    members = tuple(p.Member(i, f"u{i}", f"Person {i}", False) for i in range(people))
    clock = [0.0]
    recorder = store.start("bench", members, "bench")
    recorder.clock, recorder._start = (lambda: clock[0]), 0.0
    streams = [posedata.PoseStream(bits, key_every=fps * 2) for _ in range(people)]
    poses = [quantized(pose_sequence(seconds, fps, seed=i), bits) for i in range(people)]
    rng = np.random.default_rng(0)
    packet_bytes = audio_bitrate // 8 // 50                            # one 20 ms Opus packet
    pose_bytes = audio_bytes = 0
    writing = 0.0                                                      # CPU seconds inside the recorder only

    def record(message: bytes) -> None:
        nonlocal writing
        start = time.process_time()
        recorder.record(message)
        writing += time.process_time() - start

    frame_s, packet_s = 1 / fps, 0.02
    next_audio, speaking_until, utterance_at = 0.0, -1.0, 0.0
    for n in range(int(seconds * fps)):
        t = n * frame_s
        for slot in range(people):                                      # the room's frames of this moment
            clock[0] = t + slot * 0.001
            frame = p.relay_pose(streams[slot].encode(poses[slot][n]), slot)
            pose_bytes += len(frame)
            record(frame)
        if speaking_share > 0 and t >= utterance_at:                    # the host speaks now and then
            length = rng.uniform(3, 10)
            speaking_until, utterance_at = t + length, t + length / max(speaking_share, 1e-6)
        while next_audio < t + frame_s:
            if next_audio < speaking_until:
                clock[0] = next_audio
                toc = bytes([0xF8])                                     # CELT 20 ms, mono, one frame
                packet = toc + rng.bytes(packet_bytes - 1)              # Opus output: as random as it gets
                message = p.encode(p.Audio(int(next_audio / packet_s) & 0xFFFF, packet, 16, 0))
                audio_bytes += len(message)
                record(message)
            next_audio += packet_s
        if chat_every_s and n % int(chat_every_s * fps) == 0:
            record(p.encode(p.Chat("a line of chat about what was just said", n % people, int(t * 1000))))
    clock[0] = seconds
    start = time.process_time()
    info = recorder.close()
    writing += time.process_time() - start
    size = pathlib.Path(store.file(info.id)).stat().st_size
    header, records = read(store.file(info.id))
    read_started = time.perf_counter()
    count = sum(1 for _ in records)
    read_s = time.perf_counter() - read_started
    hours = seconds / 3600
    store.delete(info.id)
    return {"minutes": minutes, "people": people, "fps": fps, "bits": bits, "speaking_share": speaking_share,
            "records": info.records, "read_back": count, "file_mb": round(size / 1e6, 3),
            "mb_per_room_hour": round(size / 1e6 / hours, 2),
            "pose_traffic_mb_per_hour": round(pose_bytes / 1e6 / hours, 2),
            "audio_traffic_mb_per_hour": round(audio_bytes / 1e6 / hours, 2),
            "write_cpu_s_per_room_hour": round(writing / hours, 2), "read_s_per_room_hour": round(read_s / hours, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated meeting length")
    ap.add_argument("--people", type=int, default=16)
    ap.add_argument("--speaking", type=float, default=0.1, help="share of the time the AI host speaks")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    poses_only = simulate(args.minutes, args.people, 0.0)
    with_voice = simulate(args.minutes, args.people, args.speaking)
    out = {"poses_only": poses_only, "with_host_voice": with_voice,
           "mb_per_room_hour": with_voice["mb_per_room_hour"],
           "pose_mb_per_room_hour": poses_only["mb_per_room_hour"]}
    if not args.json:
        for name, r in (("poses only", poses_only), (f"host speaking {args.speaking:.0%}", with_voice)):
            print(f"{name}: {r['mb_per_room_hour']} MB per room-hour (pose traffic {r['pose_traffic_mb_per_hour']} "
                  f"MB/h, voice {r['audio_traffic_mb_per_hour']} MB/h); writing costs {r['write_cpu_s_per_room_hour']} "
                  f"s of CPU per room-hour")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
