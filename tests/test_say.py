"""avatars.say and avatars.vcam with the real Piper voice, ffmpeg and renderer: each command runs as a process
(its own models, its store of avatars in a temporary directory); the camera's clock also with a fake renderer."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from avatars.store import BUILTIN, AvatarStore
from avatars.vcam import Camera

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
FPS, RATE = 25, 22050
SPF = RATE // FPS                    # audio samples per frame
TEXT = "Hello everyone, and welcome to the meeting. We have two items today: the budget, and the summer party."


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), AVATAR_PHOTO_AVATARS_DIR=str(tmp_path_factory.mktemp("avatars")))


def command(module: str, *args: str, env: dict, stdin: str | None = None, timeout: float = 180):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, input=stdin, text=True,
                          capture_output=True, timeout=timeout)


def start(module: str, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def probe(path: pathlib.Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def figures(stderr: str) -> dict:
    """vcam's last line on stderr: "vcam: {…}"."""
    return json.loads([line for line in stderr.splitlines() if line.startswith("vcam: {")][-1][6:])


def decode(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N, 512, 512, 3), audio loudness per frame (N,)) of a video."""
    video = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           capture_output=True, check=True).stdout
    audio = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
                           capture_output=True, check=True).stdout
    frames = np.frombuffer(video, np.uint8).reshape(-1, 512, 512, 3)
    pcm = np.frombuffer(audio, np.int16).astype(np.float32) / 32768
    n = min(len(frames), len(pcm) // SPF)
    return frames[:n], np.sqrt((pcm[:n * SPF].reshape(n, SPF) ** 2).mean(axis=1))


def top_level_boxes(path: pathlib.Path) -> list[str]:
    boxes, data, i = [], path.read_bytes(), 0
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8].decode("latin-1")
        boxes.append(kind)
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        i += size if size else len(data)
    return boxes


def plays(path: pathlib.Path) -> dict:
    """The video's streams by type, after checking that every frame decodes."""
    subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"], check=True)
    return {s["codec_type"]: s for s in probe(path)["streams"]}


@pytest.fixture(scope="module")
def said(env, tmp_path_factory) -> tuple[pathlib.Path, dict]:
    out = tmp_path_factory.mktemp("say") / "hello.mp4"
    done = command("avatars.say", TEXT, str(out), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(done.stdout)
    print(f"\n[timing] say: {json.dumps(stats)}")
    return out, stats


def test_say_writes_a_fast_start_mp4_of_the_speech(said):
    out, stats = said
    streams = plays(out)
    video, audio = streams["video"], streams["audio"]
    assert (video["codec_name"], audio["codec_name"]) == ("h264", "aac")
    assert (video["width"], video["height"], video["r_frame_rate"], video["avg_frame_rate"]) == (512, 512, "25/1", "25/1")
    duration = float(probe(out)["format"]["duration"])
    assert stats["sentences"] == 2
    assert abs(duration - stats["audio_seconds"]) <= 0.04 * stats["sentences"] + 0.03   # each sentence: whole frames
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.05
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")
    assert stats["bytes"] == out.stat().st_size and stats["frames"] == int(video["nb_frames"])
    assert 0 < stats["first_frame_ms"] < 2000 and stats["render_ms_per_frame"] > 0 and stats["realtime_factor"] > 0


def test_the_mouth_moves_with_the_speech(said, env):
    """Where the voice is loudest the mouth is open (dark inside); in the long pauses (before, between and after
    the sentences) it is closed; and the mouth's opening follows the loudness with no lag (± 2 frames)."""
    out, _ = said
    frames, loudness = decode(out)
    mesh = AvatarStore(env["AVATAR_PHOTO_AVATARS_DIR"], 1 << 20).mesh(BUILTIN)
    lips = mesh.points[[0, 13, 14, 17, 61, 291], :2]                    # lip centre, inner lips, corners
    (x0, y0), (x1, y1) = (lips.min(0) - 15).astype(int), (lips.max(0) + 15).astype(int)
    mouth = frames[:, y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = (mouth < 70).mean(axis=(1, 2))                               # the inner mouth's share of the box
    silent = loudness < 0.003
    runs = np.convolve(silent, np.ones(5), mode="same") >= 5          # a pause's inside (the lip-sync, as the
    loud = loudness >= np.quantile(loudness, 0.75)                      # host's avatar, bridges pauses < 0.27 s)
    assert runs.sum() >= 4 and loud.sum() >= 10
    paused = float(np.median(dark[runs]))                 # (a pause's edges may still be closing)
    print(f"\n[mouth] dark share: loud frames {dark[loud].mean():.4f}, long pauses {paused:.4f}")
    assert dark[loud].mean() > 0.02 and dark[loud].mean() > 4 * paused
    n = len(dark)
    lags = {lag: np.corrcoef(loudness[max(0, -lag):n - max(0, lag)], dark[max(0, lag):n + min(0, lag)])[0, 1]
            for lag in range(-6, 7)}
    assert abs(max(lags, key=lags.get)) <= 2, lags


def test_vcam_to_a_file_streams_in_real_time_with_the_typed_lines(env, tmp_path):
    out, seconds = tmp_path / "cam.mp4", 6
    cam = start("avatars.vcam", "--output", str(out), "--seconds", str(seconds), env=env)
    cam.stdin.write("Hello, I am the camera.\nThis is the second line.\n")
    cam.stdin.flush()                                  # stdin stays open: --seconds ends it
    began = time.monotonic()
    err = cam.stderr.read()                            # until it exits
    cam.stdin.close()
    assert cam.wait(timeout=60) == 0, err[-2000:]
    got = figures(err)
    print(f"\n[timing] vcam: {json.dumps(got)}")
    assert time.monotonic() - began >= seconds                       # paced by the clock, not as fast as it can
    assert got["frames"] == seconds * FPS and got["lines"] == 2 and got["sentences"] >= 2
    assert abs(got["wall_seconds"] - seconds) < 0.2
    streams = plays(out)
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("h264", "aac")
    assert abs(float(probe(out)["format"]["duration"]) - seconds) <= 0.1
    pts = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(out)], capture_output=True, text=True, check=True).stdout
    steps = np.diff(sorted(float(t) for t in pts.split()))
    assert len(steps) == seconds * FPS - 1 and np.allclose(steps, 1 / FPS, atol=1e-3)
    _, loudness = decode(out)
    assert (loudness > 0.05).sum() >= 25                               # the lines were said (a second or more)


def test_vcam_without_its_device_writes_the_file_and_ends_with_stdin(env, tmp_path):
    out = tmp_path / "cam.mkv"
    done = command("avatars.vcam", "--device", "/nonexistent/video99", "--output", str(out), env=env,
                   stdin="Just one line.\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "/nonexistent/video99 does not exist" in done.stderr and f"writing to {out} instead" in done.stderr
    got = figures(done.stderr)
    assert got["sentences"] == 1 and 0.5 < got["seconds"] < 5                 # the line, a short tail, then the end
    streams = plays(out)
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("h264", "aac")


def test_vcam_ends_cleanly_on_ctrl_c(env, tmp_path):
    out = tmp_path / "cam.mp4"
    cam = start("avatars.vcam", "--output", str(out), env=env)
    cam.stdin.write("This sentence is cut short by the interrupt, somewhere in its middle part.\n")
    cam.stdin.flush()
    for line in cam.stderr:                                        # wait until it streams and speaks
        if "saying" in line:
            break
    time.sleep(1.5)
    cam.send_signal(signal.SIGINT)
    _, err = cam.communicate(timeout=60)
    assert cam.returncode == 0 and "vcam: {" in err, err[-2000:]
    streams = plays(out)
    assert float(streams["video"]["duration"]) > 1
    assert top_level_boxes(out).index("moov") < top_level_boxes(out).index("mdat")


@pytest.mark.parametrize("module, args, message", [
    ("avatars.say", ["", "out.mp4"], "nothing to say"),
    ("avatars.say", ["Hello.", "out.avi"], "write an .mp4 or .mkv file"),
    ("avatars.vcam", ["--device", "/nonexistent/video99"], "/nonexistent/video99 does not exist"),
])
def test_bad_commands_say_why(env, tmp_path, module, args, message):
    done = command(module, *[str(tmp_path / a) if a.startswith("out.") else a for a in args], env=env, timeout=60)
    assert done.returncode != 0 and message in done.stderr


# -- the camera's clock, with a renderer slower than real time -----------------------------------------------------
class SlowRenderer:
    def __init__(self, seconds: float):
        self.seconds, self.rig = seconds, types.SimpleNamespace(rest_pose=dict.fromkeys(
            ("yaw", "pitch", "roll", "x", "y", "z", "eye_l", "eye_r"), 0.0))

    def render(self, pose: dict) -> np.ndarray:
        time.sleep(self.seconds)
        return np.zeros((4, 4, 3), np.uint8)


class RecordingSink:
    def __init__(self):
        self.frames, self.audio = [], []

    def write_frame(self, frame) -> None:
        self.frames.append(time.monotonic())

    def write_audio(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def close(self) -> None:
        pass


def test_a_slow_renderer_repeats_frames_and_the_clock_does_not_drift():
    sink, seconds = RecordingSink(), 2
    camera = Camera(SlowRenderer(0.06), types.SimpleNamespace(sample_rate=RATE), sink, audio=True, seconds=seconds)
    got = camera.run()
    n = seconds * FPS
    assert len(sink.frames) == len(sink.audio) == got["frames"] == n
    assert got["repeated"] >= n // 4 and got["drawn"] < n
    sent = np.array(sink.frames) - sink.frames[0]
    assert np.abs(sent - np.arange(n) / FPS).max() < 0.03                # each frame at its slot's time
