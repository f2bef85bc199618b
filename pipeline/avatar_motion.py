"""The AI host's own face when nobody drives it: a little head motion, blinks, a friendly mouth."""
from __future__ import annotations

import math
import random


class IdleMotion:
    def __init__(self, seed: int | None = None):
        self._rng = random.Random(seed)
        self._next_blink = 0.0
        self._blink_end = 0.0

    def pose(self, t: float, thinking: bool = False) -> dict[str, float]:
        if t >= self._next_blink:
            self._blink_end = t + 0.14
            self._next_blink = t + self._rng.uniform(2.5, 5.5)
        eyes = 0.05 if t < self._blink_end else 1.0
        return {
            "yaw": 0.10 * math.sin(t / 3.1) + 0.04 * math.sin(t / 1.3),
            "pitch": 0.05 * math.sin(t / 2.3 + 1.0) + (0.12 if thinking else 0.0),
            "roll": 0.05 * math.sin(t / 4.7 + 2.0),
            "x": 0.03 * math.sin(t / 5.9), "y": 0.02 * math.sin(t / 3.7), "z": 0.0,
            "eye_l": eyes, "eye_r": eyes,
            "gaze_x": 0.3 if thinking else 0.1 * math.sin(t / 2.9), "gaze_y": 0.4 if thinking else 0.0,
            "brow_l": 0.25 if thinking else 0.1, "brow_r": 0.1,
            "mouth_open": 0.0, "mouth_wide": 0.45, "mouth_round": 0.0, "smile": 0.35, "jaw_open": 0.0,
        }
