"""A photo avatar's pose over time: the AI host's idle motion (pipeline.avatar_motion) around the photo's own
pose, with the mouth of what it says (a pipeline.lipsync MouthTrack) over it.

The host's robot avatar takes IdleMotion's values as they are; a photo is drawn relative to its own face, so
here the head's motion is added to the photo's rest pose (half as much: a photo warps visibly when it turns
far), the eyes keep the photo's own openness except while blinking, and the brows stay the photo's. The mouth
is always given (IdleMotion's closed friendly mouth, or the track's): a photo's rest mouth may be open and
smiling, which would be wrong in the pauses of speech.
"""
from __future__ import annotations

from pipeline.avatar_motion import IdleMotion

HEAD = ("yaw", "pitch", "roll", "x", "y", "z")
MOUTH = ("mouth_open", "mouth_wide", "mouth_round", "smile", "jaw_open")
HEAD_SCALE = 0.5
SKIP = 0.2                    # IdleMotion blinks on its first call: that blink is spent before our t=0


class PhotoMotion:
    """`pose(t, mouth)` for times t (seconds, non-decreasing) of one video or camera stream."""

    def __init__(self, rest: dict[str, float], seed: int | None = None, head_scale: float = HEAD_SCALE):
        self.rest, self.head_scale = rest, head_scale
        self.idle = IdleMotion(seed)
        self.idle.pose(0.0)

    def pose(self, t: float, mouth: dict[str, float] | None = None) -> dict[str, float]:
        idle = self.idle.pose(t + SKIP)
        pose = {k: self.rest[k] + self.head_scale * idle[k] for k in HEAD}
        pose.update({k: idle[k] for k in ("gaze_x", "gaze_y", *MOUTH)})
        if idle["eye_l"] < 1.0:
            pose["eye_l"] = min(self.rest["eye_l"], idle["eye_l"])
            pose["eye_r"] = min(self.rest["eye_r"], idle["eye_r"])
        pose.update(mouth or {})
        return pose
