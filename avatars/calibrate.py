"""A photo avatar checked against a face landmarker, once, when it is made: the avatar is drawn at a few values of
each expression field and a few head turns, the landmark model the pages' FaceLandmarker runs (mediapipe's face
mesh with attention) reads the drawings, the capture code's measures (avatars.rig.measure, as
static/js/pose.js) turn them into PoseData again, and the rig keeps what it was asked and what was read. From
then on it asks for the input that reads back as the value wanted: a photo's own features (a shadow on a lid)
and a landmarker's habits (a turned face's eyes read wider) no longer bias what another page's capture sees.
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
# Head turns at which the avatar is read (radians): a landmarker reads a turned face's lids and lips otherwise
# than a frontal one's; between them the rig interpolates (avatars.rig.Calibration)
YAWS = (-0.4, 0.0, 0.4)
PITCHES = (-0.25, 0.0, 0.25)
SERIES = (("mouth_open", ("mouth_open",)), ("eye", ("eye_l", "eye_r")), ("smile", ("smile",)))


def calibrate(texture: np.ndarray, mesh: FaceMesh) -> dict:
    """avatars.rig.Calibration's data for mouth_open, eye_l, eye_r and smile (a field the landmarker could not
    read at enough inputs at every head turn is left out: no correction)."""
    mesh.calibration = {}
    renderer = Renderer(texture, mesh)
    fields: dict[str, dict] = {}
    for key, readers in SERIES:
        inputs = [round(float(u), 4) for u in np.linspace(*REACH[key], STEPS)]
        tables = {r: [[None] * len(PITCHES) for _ in YAWS] for r in readers}
        for i, yaw in enumerate(YAWS):
            for j, pitch in enumerate(PITCHES):
                read = _read(renderer, key, readers, inputs, yaw, pitch)
                for r in readers:
                    tables[r][i][j] = read and read[r]
        for r in readers:
            if all(cell is not None for row in tables[r] for cell in row):
                fields[r] = {"inputs": inputs, "read": tables[r]}
    return {"yaw": list(YAWS), "pitch": list(PITCHES), "fields": fields}


def _read(renderer: Renderer, key: str, readers: tuple[str, ...], inputs: list[float], yaw: float,
          pitch: float) -> dict[str, list[float]] | None:
    """What the landmarker reads at each input of one series and head turn (made increasing), or None when it
    found the face at fewer than all but two of them (the missing ones: their neighbours' values)."""
    read: dict[str, list[float | None]] = {r: [] for r in readers}
    for u in inputs:
        pose = {**NEUTRAL, "yaw": yaw, "pitch": pitch}
        if key == "eye":
            pose["eye_l"] = pose["eye_r"] = u
        else:
            pose[key] = u
        if key == "mouth_open":
            pose["jaw_open"] = max(0.0, u) * 0.6
        faces = landmarks(renderer.render(pose))
        got = measure(faces[0]) if faces else None
        for r in readers:
            read[r].append(None if got is None else got[r])
    if sum(v is None for v in read[readers[0]]) > 2:
        return None
    return {r: _increasing(_filled(v)) for r, v in read.items()}


def _filled(values: list[float | None]) -> list[float]:
    """Gaps (the landmarker found no face) filled with the nearest value found."""
    known = [i for i, v in enumerate(values) if v is not None]
    return [v if v is not None else values[min(known, key=lambda k: abs(k - i))] for i, v in enumerate(values)]


def _increasing(values: list[float]) -> list[float]:
    """The read-back values made strictly increasing (a landmarker saturates at the ends of a range)."""
    v = np.maximum.accumulate(np.asarray(values, dtype=float))
    v = v + np.arange(len(v)) * 1e-4
    return [round(float(x), 4) for x in v]
