"""A recording as an MP4: the avatar grid drawn on the server (the cartoon face of the page, in OpenCV, from
each participant's PoseData) with the AI host's voice, through ffmpeg (H.264 + AAC, fast start).

    python -m pipeline.export <recording.avrec> <out.mp4>
"""
from __future__ import annotations

import math
import pathlib
import subprocess
import sys
import wave

import cv2
import numpy as np

from meeting.recording import RecordingError, read
from pipeline.audio import OPUS_RATE, AudioError, OpusDecoder
from wire import posedata
from wire import protocol as p

FPS = 25
NEUTRAL = posedata.dequantize(posedata.quantize({}, 8), 8)
COLOURS = [(94, 129, 244), (80, 175, 76), (0, 152, 255), (176, 39, 156), (136, 150, 0), (59, 235, 255),
           (72, 85, 121), (158, 158, 158), (244, 67, 54), (233, 30, 99), (63, 81, 181), (0, 188, 212),
           (139, 195, 74), (255, 193, 7), (121, 85, 72), (96, 125, 139), (200, 200, 200)]      # BGR, one per slot


def draw_face(tile: np.ndarray, pose: dict[str, float], colour: tuple, name: str, host: bool) -> None:
    """The page's cartoon in OpenCV: head turned by yaw/pitch/roll, eyes by openness and gaze, brows, mouth by
    open/wide/round and smile."""
    h, w = tile.shape[:2]
    tile[:] = (40, 34, 30)
    cx = w / 2 + pose["yaw"] * w * 0.35 + pose["x"] * w * 0.2
    cy = h * 0.47 - pose["pitch"] * h * 0.3 + pose["y"] * h * 0.2
    r = h * 0.33 * (1 + pose["z"] * 0.2)
    face = (255, 230, 200) if host else (190, 215, 240)
    cv2.circle(tile, (int(cx), int(cy)), int(r), face, -1, cv2.LINE_AA)
    cv2.circle(tile, (int(cx), int(cy)), int(r), colour, 4, cv2.LINE_AA)
    roll = pose["roll"]

    def at(dx: float, dy: float) -> tuple[int, int]:
        return (int(cx + dx * math.cos(roll) - dy * math.sin(roll)), int(cy + dx * math.sin(roll) + dy * math.cos(roll)))

    for side, eye, brow in ((-1, pose["eye_l"], pose["brow_l"]), (1, pose["eye_r"], pose["brow_r"])):
        ex, ey = side * r * 0.38, -r * 0.18
        cv2.ellipse(tile, at(ex, ey), (int(r * 0.16), max(1, int(r * 0.13 * eye))), math.degrees(roll), 0, 360,
                    (255, 255, 255), -1, cv2.LINE_AA)
        if eye > 0.15:
            cv2.circle(tile, at(ex + pose["gaze_x"] * r * 0.08, ey + pose["gaze_y"] * r * 0.06), int(r * 0.07),
                       (40, 30, 30), -1, cv2.LINE_AA)
        by = ey - r * (0.25 + 0.12 * brow)
        cv2.line(tile, at(ex - r * 0.15, by), at(ex + r * 0.15, by), (60, 50, 50), 3, cv2.LINE_AA)
    mouth_w = r * (0.28 + 0.18 * pose["mouth_wide"] - 0.1 * pose["mouth_round"])
    mouth_h = r * (0.03 + 0.35 * max(pose["mouth_open"], pose["jaw_open"]))
    my = r * (0.42 - 0.05 * pose["smile"])
    cv2.ellipse(tile, at(0, my), (max(2, int(mouth_w)), max(1, int(mouth_h))), math.degrees(roll), 0, 360,
                (60, 40, 120), -1, cv2.LINE_AA)
    if pose["smile"] > 0.2:
        cv2.ellipse(tile, at(0, my - mouth_h * 0.2), (max(2, int(mouth_w)), int(r * 0.1 * pose["smile"])),
                    math.degrees(roll), 0, 180, (40, 30, 90), 2, cv2.LINE_AA)
    cv2.putText(tile, name[:22], (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)


class Grid:
    """Everyone present, in tiles of TILE pixels, as the recording's messages say."""

    def __init__(self, members: list):
        self.members = {m[0]: (m[2], bool(m[3])) for m in members}      # slot -> (name, host)
        self.poses: dict[int, dict[str, float]] = {}
        self.receiver = posedata.PoseReceiver()

    def take(self, msg) -> None:
        if isinstance(msg, p.PresenceMsg):
            for m in msg.members:
                if msg.event == p.Presence.LEFT:
                    self.members.pop(m.slot, None)
                    self.poses.pop(m.slot, None)
                else:
                    self.members[m.slot] = (m.name, m.host)
        elif isinstance(msg, p.Pose) and msg.slot is not None:
            try:
                pose = self.receiver.read(msg.slot, msg.data)
            except posedata.PoseDataError:
                return
            if pose is not None:
                self.poses[msg.slot] = pose

    def frame(self, width: int, height: int) -> np.ndarray:
        out = np.zeros((height, width, 3), np.uint8)
        slots = sorted(self.members)
        cols = max(1, math.ceil(math.sqrt(len(slots) or 1)))
        rows = max(1, math.ceil(len(slots) / cols))
        tw, th = width // cols, height // rows
        for i, slot in enumerate(slots):
            name, host = self.members[slot]
            tile = out[(i // cols) * th:(i // cols + 1) * th, (i % cols) * tw:(i % cols + 1) * tw]
            draw_face(tile, self.poses.get(slot, NEUTRAL), COLOURS[slot % len(COLOURS)], name, host)
        return out


def export_mp4(source: pathlib.Path, target: pathlib.Path, size: tuple[int, int] = (960, 720)) -> None:
    """Render `source` (a recording) into `target` (MP4). Raises RecordingError for a damaged recording."""
    header, records = read(source)
    grid = Grid(header["members"])
    width, height = size
    part, wav = target.with_suffix(".part.mp4"), target.with_suffix(".wav")
    video_only = target.with_suffix(".video.mp4")
    voice: list[tuple[int, np.ndarray]] = []                 # (sample where it starts, its samples)
    decoder = OpusDecoder()
    next_frame_ms, last_ms, cursor = 0, 0, 0
    video = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
         "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         str(video_only)], stdin=subprocess.PIPE)
    try:
        for t_ms, message in records:
            while next_frame_ms <= t_ms:
                video.stdin.write(grid.frame(width, height).tobytes())
                next_frame_ms += 1000 // FPS
            try:
                msg = p.decode_server(message)
            except p.ProtocolError:
                continue
            grid.take(msg)
            if isinstance(msg, p.Audio):
                try:
                    pcm = decoder.decode(msg.data)
                except AudioError:
                    continue
                at = cursor = max(int(t_ms * OPUS_RATE / 1000), cursor)    # a burst plays one after another
                cursor += len(pcm)
                voice.append((at, pcm))
            last_ms = t_ms
        video.stdin.write(grid.frame(width, height).tobytes())
    except RecordingError:
        video.kill()
        raise
    finally:
        if video.stdin:
            video.stdin.close()
        video.wait()
    end = max(last_ms, next_frame_ms) / 1000
    audio = np.zeros(max(int(end * OPUS_RATE), cursor), np.float32)       # laid out once, at the end
    for at, pcm in voice:
        audio[at:at + len(pcm)] += pcm
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(OPUS_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    try:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(video_only), "-i", str(wav),
                        "-c:v", "copy", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(part)], check=True)
        part.rename(target)
    finally:
        wav.unlink(missing_ok=True)
        video_only.unlink(missing_ok=True)
        part.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m pipeline.export <recording.avrec> <out.mp4>")
    export_mp4(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
    print(sys.argv[2])
