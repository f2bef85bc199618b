"""A deterministic synthetic talking head (pose values in wire.posedata.FIELDS order)."""
from __future__ import annotations

import math

import numpy as np

from wire import posedata


def pose_sequence(seconds: float, fps: float, seed: int = 0, noise: float = 0.002) -> np.ndarray:
    """(frames, 17) float pose values in posedata.FIELDS order: turns, tilts, small moves, speech in
    syllables, a blink every 3-4 s, brows now and then, and a little tracker noise (in field units)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    t = np.arange(n) / fps + rng.uniform(0, 60)          # a per-seed start point on the same motion
    f = {name: np.zeros(n) for name in posedata.FIELD_NAMES}
    turns = _events(rng, t, every=(4.0, 7.0), length=(1.0, 2.5), level=(-0.6, 0.6))
    f["yaw"] = 0.12 * np.sin(2 * math.pi * t / 7.3) + turns
    f["pitch"] = 0.08 * np.sin(2 * math.pi * t / 5.1 + 1.0)
    f["roll"] = 0.06 * np.sin(2 * math.pi * t / 9.7 + 2.0) + 0.3 * _events(rng, t, (6.0, 9.0), (1.0, 2.0), (-0.5, 0.5))
    f["x"] = 0.05 * np.sin(2 * math.pi * t / 11.0) + 0.1 * turns
    f["y"] = 0.03 * np.sin(2 * math.pi * t / 8.3 + 0.5)
    f["z"] = 0.06 * np.sin(2 * math.pi * t / 13.0 + 1.5)
    blink = _blinks(rng, t)
    f["eye_l"] = f["eye_r"] = 0.9 * (1.0 - blink)
    f["gaze_x"] = -0.5 * turns + 0.2 * _steps(rng, t, (0.8, 2.0), (-1.0, 1.0))
    f["gaze_y"] = 0.1 * _steps(rng, t, (1.0, 2.5), (-1.0, 1.0))
    brows = _events(rng, t, every=(5.0, 9.0), length=(0.6, 1.2), level=(0.2, 0.7))
    f["brow_l"], f["brow_r"] = brows, 0.9 * brows
    talk, vowel = _speech(rng, t)
    f["mouth_open"] = 0.55 * talk
    f["jaw_open"] = 0.45 * talk
    f["mouth_wide"] = 0.3 + 0.3 * talk * (vowel == 0)
    f["mouth_round"] = 0.6 * talk * (vowel == 1)
    f["smile"] = 0.2 + 0.15 * np.sin(2 * math.pi * t / 17.0)
    out = np.stack([f[name] for name in posedata.FIELD_NAMES], axis=1)
    out += rng.normal(0.0, noise, out.shape)
    lo = np.array([lo for _, lo, _ in posedata.FIELDS])
    hi = np.array([hi for _, _, hi in posedata.FIELDS])
    return np.clip(out, lo, hi)


def _smooth_pulse(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """0 outside [start, start+length], a raised cosine inside."""
    x = np.clip((t - start) / length, 0.0, 1.0)
    return np.where((t > start) & (t < start + length), 0.5 - 0.5 * np.cos(2 * math.pi * x), 0.0)


def _events(rng, t, every, length, level) -> np.ndarray:
    out, s = np.zeros_like(t), t[0] + rng.uniform(0, every[0])
    while s < t[-1]:
        out += rng.uniform(*level) * _smooth_pulse(t, s, rng.uniform(*length))
        s += rng.uniform(*every)
    return out


def _blinks(rng, t) -> np.ndarray:
    out, s = np.zeros_like(t), t[0] + rng.uniform(0.5, 3.0)
    while s < t[-1]:
        out = np.maximum(out, _smooth_pulse(t, s, 0.2))
        s += rng.uniform(3.0, 4.0)
    return out


def _steps(rng, t, every, level) -> np.ndarray:
    out, s, v = np.zeros_like(t), t[0], 0.0
    while s < t[-1]:
        out[t >= s] = v
        v = rng.uniform(*level)
        s += rng.uniform(*every)
    return out


def _speech(rng, t) -> tuple[np.ndarray, np.ndarray]:
    """Phrases of 1.5-4 s with pauses; syllables at 4-6 Hz, each with its own vowel (0 wide, 1 round, 2 open)."""
    talk, vowel = np.zeros_like(t), np.full(t.shape, 2)
    s = t[0] + rng.uniform(0, 1.0)
    while s < t[-1]:
        phrase_end = s + rng.uniform(1.5, 4.0)
        while s < phrase_end:
            d = 1.0 / rng.uniform(4.0, 6.0)
            inside = (t >= s) & (t < s + d)
            talk[inside] = rng.uniform(0.4, 1.0) * np.sin(math.pi * (t[inside] - s) / d)
            vowel[inside] = rng.integers(0, 3)
            s += d
        s += rng.uniform(0.5, 2.0)
    return talk, vowel


def quantized(values: np.ndarray, bits: int) -> list[list[int]]:
    return [posedata.quantize(row.tolist(), bits) for row in values]
