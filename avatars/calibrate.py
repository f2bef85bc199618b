"""A photo avatar checked against a face landmarker, once, when it is made: the avatar is drawn at a few values of
each expression field, mediapipe's face mesh (the model the pages' FaceLandmarker runs) reads the drawings, the
capture code's measures (avatars.rig.measure, as static/js/pose.js) turn them into PoseData again, and the rig
keeps, per field, what it was asked and what was read. From then on it asks for the input that reads back as
the value wanted: a photo's own features (teeth in an open smile, a shadow on a lid) no longer bias what
another page's capture would see in it.
"""
from __future__ import annotations

import numpy as np

from avatars.face import FaceMesh, landmarks
from avatars.render import Renderer
from avatars.rig import REACH, measure

NEUTRAL = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "x": 0.0, "y": 0.0, "z": 0.0, "eye_l": 1.0, "eye_r": 1.0,
           "gaze_x": 0.0, "gaze_y": 0.0, "brow_l": 0.0, "brow_r": 0.0, "mouth_open": 0.0, "mouth_wide": 0.5,
           "mouth_round": 0.0, "smile": 0.0, "jaw_open": 0.0}
STEPS = 7


def calibrate(texture: np.ndarray, mesh: FaceMesh) -> dict[str, list[list[float]]]:
    """{field: [inputs, read back]} for mouth_open, eye_l, eye_r and smile (fields the landmarker could not read
    at enough inputs are left out: no correction)."""
    mesh.calibration = {}
    renderer = Renderer(texture, mesh)
    out = {}
    for key, reach, readers in (("mouth_open", REACH["mouth_open"], ("mouth_open",)),
                                ("eye", REACH["eye"], ("eye_l", "eye_r")),
                                ("smile", REACH["smile"], ("smile",))):
        inputs, read = [], {r: [] for r in readers}
        for u in np.linspace(*reach, STEPS):
            pose = dict(NEUTRAL)
            if key == "eye":
                pose["eye_l"] = pose["eye_r"] = float(u)
            else:
                pose[key] = float(u)
            if key == "mouth_open":
                pose["jaw_open"] = max(0.0, float(u)) * 0.6
            faces = landmarks(renderer.render(pose))
            if not faces:
                continue
            got = measure(faces[0])
            inputs.append(round(float(u), 4))
            for r in readers:
                read[r].append(got[r])
        if len(inputs) < 3:
            continue
        for r in readers:
            out[r] = [inputs, _increasing(read[r])]
    return out


def _increasing(values: list[float]) -> list[float]:
    """The read-back values made strictly increasing (a landmarker saturates at the ends of a range)."""
    v = np.maximum.accumulate(np.asarray(values, dtype=float))
    v = v + np.arange(len(v)) * 1e-4
    return [round(float(x), 4) for x in v]
