"""How PoseData moves a photo avatar's mesh: the inverse of the capture code (static/js/pose.js).

The capture code measures a face (lid gap over eye width, inner-lip gap over face height, corner lift, brow
height, cheek depth for yaw …) against calibration constants. The rig measures the photo's own face the same
way, then moves the mesh's points until those measures give the pose asked for: so what a page captures from
a person, another page draws, and a face landmarker reading the drawing gets the same values back.
Coordinates are the texture's pixels (y down); "_l"/"_r" are the viewer's left and right, as in the capture.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from avatars.face import LANDMARKS, FaceMesh

# The capture code's landmarks and calibration (static/js/pose.js; keep them equal)
EYE_L = {"outer": 33, "inner": 133, "top": 159, "bottom": 145, "iris": 468,
         "upper": (246, 161, 160, 159, 158, 157, 173), "lower": (7, 163, 144, 145, 153, 154, 155)}
EYE_R = {"outer": 263, "inner": 362, "top": 386, "bottom": 374, "iris": 473,
         "upper": (466, 388, 387, 386, 385, 384, 398), "lower": (249, 390, 373, 374, 380, 381, 382)}
IRIS_L, IRIS_R = range(468, 473), range(473, 478)
BROW_L, BROW_R = (70, 63, 105, 66, 107), (300, 293, 334, 296, 336)
NOSE, FOREHEAD, CHIN, CHEEK_L, CHEEK_R = 1, 10, 152, 234, 454
LIP_TOP, LIP_BOTTOM, MOUTH_L, MOUTH_R = 13, 14, 61, 291
CAL = {"eye_closed": 0.12, "eye_open": 0.32, "gaze_x": 5.0, "gaze_y": 8.0, "gaze_y_rest": 0.024,
       "brow_neutral": 0.075, "brow_span": 0.03, "mouth_closed": 0.01, "mouth_span": 0.12, "wide_neutral": 0.4,
       "wide_span": 0.2, "smile_span": 0.06, "jaw_neutral": 0.4, "jaw_span": 0.15, "pitch_bias": -0.15}
# How far past the capture's range the rig may be asked to go (a calibrated avatar overshoots where a landmarker
# reads a drawn face short of the value)
REACH = {"eye": (-0.5, 1.5), "mouth_open": (-0.3, 1.3), "smile": (-1.5, 1.5)}
# Upper-face points that follow the brows (the brows and the forehead just above them), by side
BROW_AREA_L = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 156)
BROW_AREA_R = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285, 383)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)
LOWER_OUTER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375)
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)


class Rig:
    """A photo avatar's mesh and what its photo's face measures at rest."""

    def __init__(self, mesh: FaceMesh):
        self.mesh = mesh
        self.calibration = Calibration(mesh.calibration)
        self.rest = mesh.points.astype(np.float64)
        p = self.rest
        self.centre = (p[CHEEK_L] + p[CHEEK_R] + p[FOREHEAD] + p[CHIN]) / 4
        self.face_w = float(np.linalg.norm(p[CHEEK_R, :2] - p[CHEEK_L, :2]))
        self.face_h = float(np.linalg.norm(p[CHIN, :2] - p[FOREHEAD, :2]))
        # What the photo's face measures; its place and size in the texture are the avatar's x = y = z = 0.
        self.rest_pose = {**measure(p, clip=False), "x": 0.0, "y": 0.0, "z": 0.0}
        face = p[:LANDMARKS]
        # How much each face point goes with the jaw: the lower lip and chin fully, fading to nothing at the
        # mouth corners' height and towards the jaw's angles.
        mouth_y = (p[MOUTH_L, 1] + p[MOUTH_R, 1]) / 2
        below = np.clip((face[:, 1] - mouth_y) / max(p[CHIN, 1] - mouth_y, 1.0), 0, 1)
        across = np.clip(1 - np.abs(face[:, 0] - self.centre[0]) / (0.55 * self.face_w), 0, 1)
        self.jaw_weight = np.sqrt(below) * across ** 0.7
        # The lower lip moves as one piece, column by column (its inner and outer points alike: it never folds
        # over itself): each column by its share of the gap at the middle, so that a photo's open mouth closes
        # along its whole width and opens again in its own shape; for a photo with closed lips (no shares to
        # take), fully in the middle and less towards the corners, which stay closed.
        lower_in, lower_out = list(LOWER_INNER_LIP), list(LOWER_OUTER_LIP)
        middle = LOWER_INNER_LIP.index(LIP_BOTTOM)
        gaps = np.maximum(face[lower_in, 1] - face[list(UPPER_INNER_LIP), 1], 0)
        mid, half = (p[MOUTH_L, 0] + p[MOUTH_R, 0]) / 2, max(abs(p[MOUTH_R, 0] - p[MOUTH_L, 0]) / 2, 1.0)
        taper = np.sqrt(np.clip(1 - np.abs(face[lower_in, 0] - mid) / half, 0, 1))
        taper /= max(taper[middle], 1e-3)
        share = np.clip(gaps / max(gaps[middle], 1e-3), 0, 1)
        parted = min(gaps[middle] / (0.03 * self.face_h), 1.0)
        column = np.minimum(parted * share + (1 - parted) * taper, 1.0)
        column[middle] = 1.0
        self.jaw_weight[lower_in] = column
        self.jaw_weight[lower_out] = column
        lower = lower_in + lower_out
        self.jaw_weight[list(UPPER_INNER_LIP)] = 0.0
        self.chin_weight = self.jaw_weight.copy()        # a jaw lower than the lips make it: the chin, not the lip
        self.chin_weight[lower] *= 0.3
        self.size = float(self.mesh.points[:, :2].max())
        # The skin of each upper lid: the points above the lid's edge, fully at the edge, nothing 0.8 of the eye's
        # width above it. A closing eye brings it down with the edge below it (each as far as the edge there goes,
        # nothing at the corners), so the photo's lashes and the shadow under the brow move down rather than
        # stretch into a dark band that a landmarker (and a person) reads as an open eye.
        self.lid_weight = {}
        for key, eye in (("eye_l", EYE_L), ("eye_r", EYE_R)):
            width = float(np.linalg.norm(p[eye["outer"], :2] - p[eye["inner"], :2]))
            edge = p[[eye["outer"], *eye["upper"], eye["inner"]], :2]
            order = np.argsort(edge[:, 0])
            edge_y = np.interp(face[:, 0], edge[order, 0], edge[order, 1])
            weight = np.clip(1 - (edge_y - face[:, 1]) / (0.8 * width), 0, 1) * (face[:, 1] < edge_y)
            weight *= (face[:, 0] > edge[:, 0].min()) & (face[:, 0] < edge[:, 0].max())
            weight[list(eye["upper"]) + list(eye["lower"]) + list(IRIS_L if key == "eye_l" else IRIS_R)] = 0
            self.lid_weight[key] = weight
        self.corner_weight = {side: _falloff(face, p[idx, :2], 0.22 * self.face_w) for side, idx in
                              (("l", MOUTH_L), ("r", MOUTH_R))}
        self.brow_weight = {side: _falloff(face, p[list(area), :2].mean(0), 0.16 * self.face_w)
                            for side, area in (("l", BROW_AREA_L), ("r", BROW_AREA_R))}

    def deform3(self, pose: dict[str, float]) -> np.ndarray:
        """The mesh's points (N, 3), z their depth (larger: farther), for `pose` (PoseData values; missing fields:
        the photo's own)."""
        want = self._wanted(pose)
        p = self.rest.copy()
        face = p[:LANDMARKS]                              # a view: changes land in p
        for side, brow, eye in (("l", BROW_L, EYE_L), ("r", BROW_R, EYE_R)):   # brows first: over the open lid
            now = (face[eye["top"], 1] - face[list(brow), 1].mean()) / self.face_h
            target = CAL["brow_neutral"] + want[f"brow_{side}"] * CAL["brow_span"]
            face[:, 1] -= (target - now) * self.face_h * self.brow_weight[side]
        for eye, iris, key in ((EYE_L, IRIS_L, "eye_l"), (EYE_R, IRIS_R, "eye_r")):
            self._eye(face, eye, iris, want[key], want["gaze_x"], want["gaze_y"], self.lid_weight[key])
        self._mouth(face, want)
        self._head(p, want)
        self._as_seen(face, want)
        return p

    def eyeballs(self, pose: dict[str, float]) -> list[np.ndarray]:
        """For each eye (the viewer's left, then right), the affine map (2, 3) from the texture to the frame of
        its eyeball: it turns and moves with the head, is not squeezed by the lids (they close over it), and its
        iris looks where gaze_x and gaze_y say (the photo's own gaze at 0 is taken out)."""
        want = self._wanted(pose)
        head = self.rest.copy()
        self._head(head, want)                        # the face turned as the pose asks, without expression
        out = []
        for eye, key in ((EYE_L, "eye_l"), (EYE_R, "eye_r")):
            anchors = [eye["outer"], eye["inner"], eye["top"]]
            src, dst = self.rest[anchors, :2], head[anchors, :2]
            m = cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)
            if want[key] >= 0.2:
                width = float(np.linalg.norm(dst[0] - dst[1]))
                contour = self.rest[list(eye["upper"]) + list(eye["lower"]), :2].mean(0)
                own = m[:, :2] @ (self.rest[eye["iris"], :2] - contour)
                m[:, 2] += np.array([want["gaze_x"] / CAL["gaze_x"],
                                     -(want["gaze_y"] / CAL["gaze_y"] + CAL["gaze_y_rest"])]) * width - own
            out.append(m)
        return out

    def _wanted(self, pose: dict[str, float]) -> dict[str, float]:
        """Every field's value for `pose`: the photo's own where the pose has none, the calibrated input where a
        calibrated field is given."""
        given = {k: v for k, v in pose.items() if v is not None}
        want = {**self.rest_pose, **given}
        for key in self.calibration.fields:                       # what reads back as the value wanted
            if key in given:                                      # (a missing field: the photo's own)
                want[key] = self.calibration.input_for(key, want[key], want["yaw"], want["pitch"])
        return want

    def _eye(self, face, eye, iris, openness, gaze_x, gaze_y, lid) -> None:
        width = np.linalg.norm(face[eye["outer"], :2] - face[eye["inner"], :2])
        gap = face[eye["bottom"], 1] - face[eye["top"], 1]
        target = (CAL["eye_closed"] + float(np.clip(openness, *REACH["eye"])) * (CAL["eye_open"] - CAL["eye_closed"])) \
            * width
        # Upper lid (and the iris with it) towards the lower lid; a closed eye is the lid's skin over it.
        k = max(target, 0.02 * width) / max(gap, 1e-3)
        bottom = face[eye["bottom"], 1]
        edge = [eye["outer"], *eye["upper"], eye["inner"]]
        xs, drops = face[edge, 0], (bottom - face[edge, 1]) * (1 - k)
        drops[[0, -1]] = 0.0                                      # the corners stay
        order = np.argsort(xs)
        for i in list(eye["upper"]) + list(iris):
            face[i, 1] = bottom + (face[i, 1] - bottom) * k
        # the lid's skin above comes down with the edge below it (a lid, not a fold)
        face[:, 1] += np.interp(face[:, 0], xs[order], drops[order]) * lid
        centre = face[list(eye["upper"]) + list(eye["lower"]), :2].mean(0)
        iris_now = face[eye["iris"], :2]
        shift = np.array([gaze_x / CAL["gaze_x"], -(gaze_y / CAL["gaze_y"] + CAL["gaze_y_rest"])]) * width - (iris_now - centre)
        face[list(iris), :2] += shift * (0.0 if openness < 0.2 else 1.0)

    def _mouth(self, face, want) -> None:
        h = self.face_h
        gap = np.linalg.norm(face[LIP_BOTTOM, :2] - face[LIP_TOP, :2])
        target = (CAL["mouth_closed"] + float(np.clip(want["mouth_open"], *REACH["mouth_open"])) * CAL["mouth_span"]) * h
        face[:, 1] += (target - gap) * self.jaw_weight
        jaw_now = (face[CHIN, 1] - face[NOSE, 1]) / h
        jaw_target = CAL["jaw_neutral"] + float(np.clip(want["jaw_open"], 0, 1)) * CAL["jaw_span"]
        extra = (jaw_target - jaw_now) * h
        if extra > 0:                                     # the jaw lower than the lips alone make it
            face[:, 1] += extra * self.chin_weight
        width_now = np.linalg.norm(face[MOUTH_R, :2] - face[MOUTH_L, :2]) / self.face_w
        width_target = CAL["wide_neutral"] + (float(np.clip(want["mouth_wide"], 0, 1)) - 0.5) * CAL["wide_span"]
        spread = (width_target - width_now) * self.face_w / 2
        face[:, 0] -= spread * self.corner_weight["l"]
        face[:, 0] += spread * self.corner_weight["r"]
        centre_y = (face[LIP_TOP, 1] + face[LIP_BOTTOM, 1]) / 2
        lift_now = (centre_y - (face[MOUTH_L, 1] + face[MOUTH_R, 1]) / 2) / h
        lift = (float(np.clip(want["smile"], *REACH["smile"])) * CAL["smile_span"] - lift_now) * h
        face[:, 1] -= lift * (self.corner_weight["l"] + self.corner_weight["r"])

    def _head(self, p, want) -> None:
        """Turn the face points in 3D about the face's centre (orthographic), then move and scale them in the
        image; the fixed points (a ring round the face, the texture's border) stay."""
        rest = self.rest_pose
        head = p[:LANDMARKS]
        rel = head - self.centre
        ry, rx = want["yaw"] - rest["yaw"], want["pitch"] - rest["pitch"]
        cy, sy, cx, sx = math.cos(ry), math.sin(ry), math.cos(rx), math.sin(rx)
        x, y, z = rel[:, 0].copy(), rel[:, 1].copy(), rel[:, 2].copy()
        x, z = x * cy - z * sy, x * sy + z * cy             # yaw: the viewer's right side goes back
        y, z = y * cx + z * sx, z * cx - y * sx             # pitch: the chin comes forward
        rr = want["roll"] - rest["roll"]
        cr, sr = math.cos(rr), math.sin(rr)
        x, y = x * cr - y * sr, x * sr + y * cr
        scale = 2.0 ** want["z"]                          # x, y, z: 0 is the photo as it is (see measure)
        head[:, 0] = self.centre[0] + x * scale
        head[:, 1] = self.centre[1] + y * scale
        head[:, 2] = self.centre[2] + z * scale
        p[:LANDMARKS, :2] += (want["x"] * self.size / 2, -want["y"] * self.size / 2)

    def _as_seen(self, face, want) -> None:
        """The lids and lips set again as a camera sees the turned face: a turn foreshortens an eye's width
        and its lid gap unequally (the lids lie at other depths than the corners), so the gap is made the
        share of the width, and the lips' gap the share of the face's height, that the capture's measures
        turn into the values asked for."""
        down = face[CHIN, :2] - face[FOREHEAD, :2]
        face_h = float(np.linalg.norm(down))
        down /= max(face_h, 1e-6)
        for eye, iris, key in ((EYE_L, IRIS_L, "eye_l"), (EYE_R, IRIS_R, "eye_r")):
            width = float(np.linalg.norm(face[eye["outer"], :2] - face[eye["inner"], :2]))
            ratio = CAL["eye_closed"] + float(np.clip(want[key], *REACH["eye"])) * (CAL["eye_open"] - CAL["eye_closed"])
            bottom = face[eye["bottom"], :2].copy()
            gap = bottom - face[eye["top"], :2]                    # from the upper lid down to the lower
            along = float(gap @ down)
            across = float(np.linalg.norm(gap - along * down))
            target = max(ratio, 0.02) * width
            if along <= 1e-3 or target <= across:
                continue
            k = min(np.sqrt(target ** 2 - across ** 2) / along, 2.0)     # the lid's distance along `down`, scaled
            ids = list(eye["upper"]) + list(iris)
            s = (bottom - face[ids, :2]) @ down
            face[ids, :2] += np.outer(s * (1 - k), down)
        gap = face[LIP_BOTTOM, :2] - face[LIP_TOP, :2]
        target = (CAL["mouth_closed"] + float(np.clip(want["mouth_open"], *REACH["mouth_open"])) * CAL["mouth_span"]) \
            * face_h
        along = float(gap @ down)
        sideways = gap - along * down
        across = float(np.linalg.norm(sideways))
        # |gap| = target: along `down` when that can do it, else the lower lip under the upper one; a target
        # below zero (lips pressed together): the lower lip that far up
        if target > across:
            new_along, keep = np.sqrt(target ** 2 - across ** 2), 1.0
        else:
            new_along, keep = min(target, 0.0), max(target, 0.0) / max(across, 1e-6)
        face[:, :2] += np.outer(self.jaw_weight, (new_along - along) * down + (keep - 1) * sideways)


class Calibration:
    """What a face landmarker read back from the avatar drawn at known inputs (avatars.calibrate), at a grid of
    head turns: {"yaw": [...], "pitch": [...], "fields": {field: {"inputs": [...], "read": [[[...] per pitch]
    per yaw]}}}. The input for a value wanted is interpolated within each grid cell's table, then across the
    cells (bilinear in yaw and pitch, held at the grid's edges). The first format ({field: [inputs, read]}, one
    frontal table) still loads."""

    def __init__(self, data: dict | None):
        data = data or {}
        if "fields" not in data:
            data = {"yaw": [0.0], "pitch": [0.0],
                    "fields": {k: {"inputs": v[0], "read": [[v[1]]]} for k, v in data.items()}}
        self.yaw, self.pitch = np.asarray(data["yaw"], float), np.asarray(data["pitch"], float)
        self.fields = {k: (np.asarray(v["inputs"], float), np.asarray(v["read"], float))
                       for k, v in data["fields"].items()}

    def input_for(self, key: str, value: float, yaw: float, pitch: float) -> float:
        inputs, read = self.fields[key]
        out = 0.0
        for i, wi in _cell(self.yaw, yaw):
            for j, wj in _cell(self.pitch, pitch):
                if wi * wj > 0:
                    out += wi * wj * float(np.interp(value, read[i, j], inputs))
        return out


def _cell(grid: np.ndarray, v: float) -> list[tuple[int, float]]:
    """The grid's two entries around `v` with their linear weights (one entry at or beyond an edge)."""
    if len(grid) == 1 or v <= grid[0]:
        return [(0, 1.0)]
    if v >= grid[-1]:
        return [(len(grid) - 1, 1.0)]
    k = int(np.searchsorted(grid, v)) - 1
    t = float((v - grid[k]) / (grid[k + 1] - grid[k]))
    return [(k, 1 - t), (k + 1, t)]


def measure(points: np.ndarray, clip: bool = True) -> dict[str, float]:
    """PoseData of a face's landmarks (texture pixels), as static/js/pose.js computes it (square image); with
    `clip` off, past the capture's range (a wide-open eye reads 1.2: the photo's own, kept at rest)."""
    limit = np.clip if clip else (lambda v, lo, hi: v)
    side = 512.0
    P = points / side
    eye_l, eye_r = P[EYE_L["outer"]], P[EYE_R["outer"]]
    roll = math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
    across = P[CHEEK_R] - P[CHEEK_L]
    down = P[CHIN] - P[FOREHEAD]
    yaw = math.atan2(across[2], math.hypot(across[0], across[1]))
    pitch = -math.atan2(down[2], math.hypot(down[0], down[1])) - CAL["pitch_bias"]
    c = (P[CHEEK_L] + P[CHEEK_R] + P[FOREHEAD] + P[CHIN]) / 4
    cos, sin = math.cos(-roll), math.sin(-roll)

    def F(i):
        dx, dy = P[i, 0] - c[0], P[i, 1] - c[1]
        return np.array([dx * cos - dy * sin, dx * sin + dy * cos])

    face_w = np.linalg.norm(F(CHEEK_L) - F(CHEEK_R))
    face_h = np.linalg.norm(F(FOREHEAD) - F(CHIN))

    def eye(e):
        width = np.linalg.norm(F(e["outer"]) - F(e["inner"]))
        gap = np.linalg.norm(F(e["top"]) - F(e["bottom"]))
        return float(limit((gap / width - CAL["eye_closed"]) / (CAL["eye_open"] - CAL["eye_closed"]), 0, 1))

    def brow(ids, e):
        b = np.mean([F(i)[1] for i in ids])
        return float(limit(((F(e["top"])[1] - b) / face_h - CAL["brow_neutral"]) / CAL["brow_span"], -1, 1))

    lip_top, lip_bottom, corner_l, corner_r = F(LIP_TOP), F(LIP_BOTTOM), F(MOUTH_L), F(MOUTH_R)
    mouth_open = float(limit((np.linalg.norm(lip_top - lip_bottom) / face_h - CAL["mouth_closed"])
                               / CAL["mouth_span"], 0, 1))
    mouth_wide = float(limit(0.5 + (np.linalg.norm(corner_l - corner_r) / face_w - CAL["wide_neutral"])
                               / CAL["wide_span"], 0, 1))
    smile = ((lip_top[1] + lip_bottom[1]) / 2 - (corner_l[1] + corner_r[1]) / 2) / face_h / CAL["smile_span"]
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "x": float(limit(c[0] * 2 - 1, -1, 1)),
            "y": float(limit(1 - c[1] * 2, -1, 1)),
            "z": float(limit(math.log2(math.hypot(across[0], across[1]) / 0.3), -1, 1)),
            "eye_l": eye(EYE_L), "eye_r": eye(EYE_R), "gaze_x": 0.0, "gaze_y": 0.0,
            "brow_l": brow(BROW_L, EYE_L), "brow_r": brow(BROW_R, EYE_R), "mouth_open": mouth_open,
            "mouth_wide": mouth_wide, "mouth_round": 0.0, "smile": float(limit(smile, -1, 1)),
            "jaw_open": float(limit((np.linalg.norm(F(NOSE) - F(CHIN)) / face_h - CAL["jaw_neutral"])
                                      / CAL["jaw_span"], 0, 1))}


def _falloff(face: np.ndarray, at: np.ndarray, radius: float) -> np.ndarray:
    d = np.linalg.norm(face[:, :2] - at, axis=1) / radius
    return np.clip(1 - d, 0, 1) ** 2 * (3 - 2 * np.clip(1 - d, 0, 1))
