"""Draws a photo avatar on the server (numpy + OpenCV): the photo's texture on its mesh, the mesh deformed by
PoseData (avatars.rig), an inner mouth (darkness, teeth) behind the lips where they part.

Each frame: the deformed triangles are rasterised into a map of triangle ids, every covered pixel is sent
back through its triangle's affine map to the texture, and cv2.remap samples the texture there; pixels no
triangle covers (the mouth's opening) keep the inner-mouth layer drawn first.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatars.face import EYE_CONTOURS, LANDMARKS, TEXTURE, FaceMesh, open_holes
from avatars.rig import LOWER_INNER_LIP, UPPER_INNER_LIP, Rig

MOUTH_RING = (78,) + UPPER_INNER_LIP + (308,) + tuple(reversed(LOWER_INNER_LIP))
EYE_RINGS = tuple(contour[:9] + tuple(reversed(contour[9:])) for contour in EYE_CONTOURS)     # in order round
INSIDE = (40, 18, 24)            # the mouth's darkness (RGB)
TEETH = (226, 220, 206)
TEETH_PROFILE = (0.3, 0.65, 0.9, 1.0, 1.0, 1.0, 0.9, 0.65, 0.3)    # the teeth's height along the upper lip


class Renderer:
    def __init__(self, texture: np.ndarray, mesh: FaceMesh):
        if texture.shape[:2] != (TEXTURE, TEXTURE):
            raise ValueError(f"a photo avatar's texture is {TEXTURE}x{TEXTURE}")
        self.texture = np.ascontiguousarray(texture[:, :, :3])
        self.rig = Rig(mesh)
        # Only triangles with a face point move; the others (border to ring) keep the photo as it is.
        self.src = mesh.points[:, :2].astype(np.float64)
        tri = open_holes(mesh.triangles)                     # (a mesh made before the eyes were opened)
        self.triangles = tri[(tri < LANDMARKS).any(axis=1)]
        # Each eye's eyeball: the photo's eye and some of the lids around it (the lids cover the rest)
        self.eyes = []
        for contour in EYE_CONTOURS:
            ring = self.src[list(contour)]
            centre = ring.mean(0)
            self.eyes.append(centre + (ring - centre) * 1.6)
        ys, xs = np.mgrid[0:TEXTURE, 0:TEXTURE]
        self._xs, self._ys = xs.astype(np.float32), ys.astype(np.float32)
        self._ids = np.zeros((TEXTURE, TEXTURE), np.int32)

    def render(self, pose: dict[str, float], size: int = TEXTURE) -> np.ndarray:
        """The avatar for `pose` as an RGB image of `size` x `size`."""
        points = self.rig.deform3(pose)
        dst = points[:, :2]
        frame = self._inner_mouth(dst)
        self._eyeballs(frame, pose)
        tri = self.triangles
        # The region the moving triangles cover, now and at rest (what they leave is theirs to fill again).
        both = np.vstack([dst[tri].reshape(-1, 2), self.src[tri].reshape(-1, 2)])
        x0, y0 = np.clip(np.floor(both.min(0)).astype(int), 0, TEXTURE - 1)
        x1, y1 = np.clip(np.ceil(both.max(0)).astype(int) + 1, 1, TEXTURE)
        ids = self._ids[y0:y1, x0:x1]
        ids.fill(0)
        corners = np.round((dst[tri] - (x0, y0)) * 16).astype(np.int32)      # 4 bits of sub-pixel precision
        # Far triangles first, near ones over them: where a turn folds the mesh, the nearer skin shows.
        order = np.argsort(-points[tri, 2].mean(axis=1))
        for n, triangle in zip((order + 1).tolist(), corners[order]):
            cv2.fillConvexPoly(ids, triangle, n, lineType=cv2.LINE_8, shift=4)
        # Pixels along shared edges that neither triangle's rasterisation took: the neighbours' triangle (only
        # the mouth's and the eyes' openings are meant to be empty)
        holes = ids == 0
        opening = np.zeros(ids.shape, np.uint8)
        cv2.fillPoly(opening, [np.round((dst[list(ring)] - (x0, y0)) * 16).astype(np.int32)
                               for ring in (MOUTH_RING, *EYE_RINGS)], 1, cv2.LINE_8, shift=4)
        holes &= opening == 0
        if holes.any():
            grown = cv2.dilate(ids.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
            ids[holes] = grown[holes]
        # Each pixel's texture position by its triangle's affine map; pixels no triangle covers (id 0) map outside
        # the texture, where remap's transparent border leaves the layer behind as it is.
        coef = np.empty((6, len(tri) + 1))           # (float64: a squashed triangle's map has huge terms)
        coef[:, 0] = (0, 0, -TEXTURE, 0, 0, -TEXTURE)
        coef[:, 1:] = _affine(dst[tri], self.src[tri]).reshape(-1, 6).T
        at = ids.astype(np.intp)
        xs, ys = self._xs[y0:y1, x0:x1], self._ys[y0:y1, x0:x1]
        map_x, map_y = coef[0].take(at), coef[3].take(at)           # (in place: no full-size temporaries)
        map_x *= xs
        map_x += coef[1].take(at) * ys
        map_x += coef[2].take(at)
        map_y *= xs
        map_y += coef[4].take(at) * ys
        map_y += coef[5].take(at)
        cv2.remap(self.texture, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                  dst=frame[y0:y1, x0:x1], borderMode=cv2.BORDER_TRANSPARENT)
        if size != TEXTURE:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        return frame

    def _eyeballs(self, frame: np.ndarray, pose: dict[str, float]) -> None:
        """Draws each eyeball into the layer behind the face (the eyes' openings show it)."""
        for region, m in zip(self.eyes, self.rig.eyeballs(pose)):
            placed = region @ m[:, :2].T + m[:, 2]
            x0, y0 = np.clip(np.floor(placed.min(0)).astype(int), 0, TEXTURE - 1)
            x1, y1 = np.clip(np.ceil(placed.max(0)).astype(int) + 1, 1, TEXTURE)
            shifted = m.copy()
            shifted[:, 2] -= (x0, y0)
            frame[y0:y1, x0:x1] = cv2.warpAffine(self.texture, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                                 borderMode=cv2.BORDER_REPLICATE)

    def _inner_mouth(self, dst: np.ndarray) -> np.ndarray:
        """The layer behind the face: the photo's own colours, and inside the inner lips a dark mouth with the
        upper teeth along the upper lip (drawn within the lips' ring only: the mesh's seams never show it)."""
        frame = self.texture.copy()
        ring = dst[list(MOUTH_RING)]
        x0, y0 = np.clip(np.floor(ring.min(0)).astype(int) - 2, 0, TEXTURE - 1)
        x1, y1 = np.clip(np.ceil(ring.max(0)).astype(int) + 3, 1, TEXTURE)
        at = lambda points: [np.round((points - (x0, y0)) * 16).astype(np.int32)]       # noqa: E731
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, at(ring), 255, cv2.LINE_AA, shift=4)
        layer = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        layer[:] = INSIDE
        gap = float(np.linalg.norm(dst[14] - dst[13]))
        if gap > 2:
            upper = dst[list(UPPER_INNER_LIP)]              # short of the corners, where the lips meet
            down = min(gap * 0.4, 0.03 * TEXTURE) * np.array(TEETH_PROFILE)[:, None] * (0, 1)
            teeth = np.vstack([upper, (upper + down)[::-1]])
            cv2.fillPoly(layer, at(teeth), TEETH, cv2.LINE_AA, shift=4)
        region = frame[y0:y1, x0:x1]
        alpha = inside[:, :, None].astype(np.float32) / 255
        region[:] = (region * (1 - alpha) + layer * alpha).astype(np.uint8)
        return frame


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """For each triangle (M, 3, 2) the affine map (M, 2, 3) taking `src`'s corners to `dst`'s (closed form: the
    edge vectors' 2 x 2 inverse; a flattened triangle covers no pixel, its map is any finite one)."""
    e = np.stack([src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]], axis=2)          # (M, 2, 2): columns are edges
    f = np.stack([dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]], axis=2)
    det = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    inv = np.stack([np.stack([e[:, 1, 1], -e[:, 0, 1]], 1), np.stack([-e[:, 1, 0], e[:, 0, 0]], 1)], 1) / det[:, None, None]
    linear = f @ inv                                                                 # (M, 2, 2)
    shift = dst[:, 0] - np.einsum("mij,mj->mi", linear, src[:, 0])
    return np.concatenate([linear, shift[:, :, None]], axis=2)
