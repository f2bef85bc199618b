"""Draws a photo avatar on the server (numpy + OpenCV): the photo's texture on its mesh, the mesh deformed by
PoseData (avatars.rig), an inner mouth (darkness, teeth) behind the lips where they part.

Each frame: the deformed triangles are rasterised into a map of triangle ids, every covered pixel is sent
back through its triangle's affine map to the texture, and cv2.remap samples the texture there; pixels no
triangle covers (the mouth's opening) keep the inner-mouth layer drawn first.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatars.face import LANDMARKS, TEXTURE, FaceMesh
from avatars.rig import LOWER_INNER_LIP, UPPER_INNER_LIP, Rig

MOUTH_RING = (78,) + UPPER_INNER_LIP + (308,) + tuple(reversed(LOWER_INNER_LIP))
INSIDE = (40, 18, 24)            # the mouth's darkness (RGB)
TEETH = (236, 232, 222)


class Renderer:
    def __init__(self, texture: np.ndarray, mesh: FaceMesh):
        if texture.shape[:2] != (TEXTURE, TEXTURE):
            raise ValueError(f"a photo avatar's texture is {TEXTURE}x{TEXTURE}")
        self.texture = np.ascontiguousarray(texture[:, :, :3])
        self.rig = Rig(mesh)
        # Only triangles with a face point move; the others (border to ring) keep the photo as it is.
        tri = mesh.triangles
        self.triangles = tri[(tri < LANDMARKS).any(axis=1)]
        self.src = mesh.points[:, :2].astype(np.float64)
        ys, xs = np.mgrid[0:TEXTURE, 0:TEXTURE]
        self._xs, self._ys = xs.astype(np.float32), ys.astype(np.float32)
        self._ids = np.zeros((TEXTURE, TEXTURE), np.int32)

    def render(self, pose: dict[str, float], size: int = TEXTURE) -> np.ndarray:
        """The avatar for `pose` as an RGB image of `size` x `size`."""
        points = self.rig.deform3(pose)
        dst = points[:, :2]
        frame = self._inner_mouth(dst)
        tri = self.triangles
        # The region the moving triangles cover, now and at rest (what they leave is theirs to fill again).
        both = np.vstack([dst[tri].reshape(-1, 2), self.src[tri].reshape(-1, 2)])
        x0, y0 = np.clip(np.floor(both.min(0)).astype(int), 0, TEXTURE - 1)
        x1, y1 = np.clip(np.ceil(both.max(0)).astype(int) + 1, 1, TEXTURE)
        ids = self._ids[y0:y1, x0:x1]
        ids.fill(0)
        corners = np.round((dst[tri] - (x0, y0)) * 16).astype(np.int32)      # 4 bits of sub-pixel precision
        # Far triangles first, near ones over them: where a turn folds the mesh, the nearer skin shows.
        for n in np.argsort(-points[tri, 2].mean(axis=1)):
            cv2.fillConvexPoly(ids, corners[n], int(n) + 1, lineType=cv2.LINE_8, shift=4)
        inverse = _affine(dst[tri], self.src[tri])                 # (M, 2, 3): destination -> texture
        covered = ids > 0
        a = inverse[ids[covered] - 1]
        xs, ys = self._xs[y0:y1, x0:x1][covered], self._ys[y0:y1, x0:x1][covered]
        map_x = np.full(ids.shape, -1, np.float32)
        map_y = np.full(ids.shape, -1, np.float32)
        map_x[covered] = a[:, 0, 0] * xs + a[:, 0, 1] * ys + a[:, 0, 2]
        map_y[covered] = a[:, 1, 0] * xs + a[:, 1, 1] * ys + a[:, 1, 2]
        warped = cv2.remap(self.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = frame[y0:y1, x0:x1]
        region[covered] = warped[covered]
        if size != TEXTURE:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        return frame

    def _inner_mouth(self, dst: np.ndarray) -> np.ndarray:
        """The layer behind the face: the photo's own colours, and where the lips part, a dark mouth with the
        upper teeth along the upper lip."""
        frame = self.texture.copy()
        ring = dst[list(MOUTH_RING)]
        cv2.fillPoly(frame, [np.round(ring * 16).astype(np.int32)], INSIDE, cv2.LINE_AA, shift=4)
        upper = dst[[78, *UPPER_INNER_LIP, 308]]
        gap = float(np.linalg.norm(dst[14] - dst[13]))
        if gap > 2:
            teeth = np.vstack([upper, (upper + np.array([0, min(gap * 0.45, 0.05 * TEXTURE)]))[::-1]])
            cv2.fillPoly(frame, [np.round(teeth * 16).astype(np.int32)], TEETH, cv2.LINE_AA, shift=4)
        return frame


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """For each triangle (M, 3, 2) the affine map (M, 2, 3) taking `src`'s corners to `dst`'s."""
    m = len(src)
    a = np.concatenate([src, np.ones((m, 3, 1))], axis=2)        # (M, 3, 3): rows [x, y, 1]
    det = np.linalg.det(a)
    a[np.abs(det) < 1e-9] += np.eye(3) * 1e-6                    # a flattened triangle: covers no pixel anyway
    solved = np.linalg.solve(a, dst)                             # (M, 3, 2): a @ solved = dst
    return np.transpose(solved, (0, 2, 1))
