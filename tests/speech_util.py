"""Test helpers for the speech stages: espeak-ng speech at 16 kHz, its true boundaries, and feeding a stage."""
from __future__ import annotations

import asyncio
import functools
import subprocess
import tempfile

import numpy as np
import soundfile

from pipeline.audio import resample
from pipeline.frames import AudioIn

SR = 16000


@functools.lru_cache(maxsize=16)
def _espeak(text: str, voice: str, speed: int, sr: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text], check=True, capture_output=True)
        pcm, rate = soundfile.read(f.name, dtype="float32")
    return resample(pcm, rate, sr)


def espeak(text: str, voice: str = "en-us", speed: int = 150, sr: int = SR) -> np.ndarray:
    """`text` spoken by espeak-ng: float32 mono at `sr` (16 kHz by default; a fresh copy each call)."""
    return _espeak(text, voice, speed, sr).copy()


def silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(seconds * sr), np.float32)


def speech_bounds(pcm: np.ndarray, sr: int = SR, threshold: float = 0.01) -> tuple[float, float]:
    """Seconds of the first and last sample louder than `threshold`: where the speech really is."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    return loud[0] / sr, (loud[-1] + 1) / sr


def run_stage(stage, frames) -> list:
    """Every frame `stage.process` yields for `frames`, in order."""
    async def go():
        return [out for frame in frames async for out in stage.process(frame)]
    return asyncio.run(go())


def mic_frames(pcm: np.ndarray, sr: int = SR, speaker: str = "alice", frame_ms: int = 20, t0: float = 100.0) -> list[AudioIn]:
    """`pcm` cut into microphone frames; each `t` is the time of its first sample."""
    n = sr * frame_ms // 1000
    return [AudioIn(speaker, pcm[i:i + n], sr, t0 + i / sr) for i in range(0, len(pcm), n)]


async def feed_timed(stage, frames: list[AudioIn]) -> list[tuple[float, object]]:
    """(end time of the input frame that produced it, output frame) for every output: when it was known."""
    out = []
    for frame in frames:
        async for result in stage.process(frame):
            out.append((frame.t + len(frame.pcm) / frame.sample_rate, result))
    return out
