"""A photo -> what a photo avatar is made of: the face's 478 landmarks (mediapipe 0.10.21's face mesh, offline,
on the server), a square texture around the face, and a triangle mesh over the whole texture whose face
points PoseData moves (avatars.rig) while its border stays put.

Texture coordinates are pixels of the TEXTURE x TEXTURE texture; z is in the same pixel units (mediapipe's z
is scaled like x), negative towards the camera.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import Delaunay

TEXTURE = 512
CROP = 2.3                      # the texture's side over the face's width: hair, ears, neck and some background
LANDMARKS = 478
# The inner lip contour (mediapipe's indices): triangles inside it are the mouth's opening, left empty so
# that the inner-mouth layer shows through when the lips part.
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
# The contour of each eye (image-left, then image-right): triangles inside are the eye's opening
EYE_CONTOURS = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
                (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398))
BORDER_STEPS = 8                # fixed points per side of the texture, and of a ring around the face


class FaceError(ValueError):
    """No usable face in the image; `message` says why in words a person can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class FaceMesh:
    """The rest shape: points (N, 3) in texture pixels (the LANDMARKS face points first, then fixed points),
    triangles (M, 3) into them."""
    points: np.ndarray
    triangles: np.ndarray
    faces_found: int = 1
    notes: list[str] = field(default_factory=list)
    # field -> [inputs, what a face landmarker read back]: the rig asks for the input that reads as the value
    # wanted (avatars.calibrate); empty: no correction
    calibration: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def face(self) -> np.ndarray:
        return self.points[:LANDMARKS]

    def as_json(self) -> dict:
        return {"version": 1, "texture": TEXTURE, "landmarks": LANDMARKS,
                "points": np.round(self.points, 2).tolist(), "triangles": self.triangles.tolist(),
                "calibration": self.calibration}

    @classmethod
    def from_json(cls, data: dict) -> FaceMesh:
        if data.get("version") != 1 or data.get("texture") != TEXTURE:
            raise FaceError("an avatar mesh of another version")
        return cls(np.asarray(data["points"], np.float32), np.asarray(data["triangles"], np.int32),
                   calibration=data.get("calibration") or {})


_mesh_lock = threading.Lock()
_mesh = None


def _face_mesh():
    """mediapipe's face mesh with attention (refined eyes, lips and irises: the model the pages' FaceLandmarker
    runs too, scripts/build_assets.py), one per process; its graph is not for two threads at once: use under
    the lock."""
    global _mesh
    if _mesh is None:
        import mediapipe as mp
        _mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, refine_landmarks=True,
                                                min_detection_confidence=0.5)
    return _mesh


def landmarks(rgb: np.ndarray) -> list[np.ndarray]:
    """Every face's 478 landmarks in `rgb`'s pixels (x, y, z), the largest face first."""
    h, w = rgb.shape[:2]
    with _mesh_lock:
        result = _face_mesh().process(np.ascontiguousarray(rgb))
    faces = []
    for face in result.multi_face_landmarks or []:
        faces.append(np.array([[p.x * w, p.y * h, p.z * w] for p in face.landmark], np.float32))
    faces.sort(key=lambda f: -float(np.ptp(f[:, 0]) * np.ptp(f[:, 1])))
    return faces


def build(rgb: np.ndarray) -> tuple[np.ndarray, FaceMesh]:
    """A photo (H, W, 3 RGB uint8) -> (the TEXTURE x TEXTURE RGB texture, its mesh). Raises FaceError."""
    faces = landmarks(rgb)
    if not faces:
        raise FaceError("no face found in the photo: use a photo where one face looks at the camera, well lit")
    face = faces[0]
    notes = [f"{len(faces)} faces found: the largest was taken"] if len(faces) > 1 else []
    if len(face) < LANDMARKS:
        raise FaceError("the face was found but not its eyes (iris landmarks): try a sharper, frontal photo")
    # A square around the face, CROP times its width, a little lower than the landmarks' centre (the neck).
    x0, y0 = face[:, :2].min(0)
    x1, y1 = face[:, :2].max(0)
    width = max(x1 - x0, y1 - y0)
    if width < 40:
        raise FaceError(f"the face is too small in the photo ({width:.0f} pixels wide): use a closer photo")
    side = width * CROP
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.08 * width
    scale = TEXTURE / side
    matrix = np.array([[scale, 0, TEXTURE / 2 - cx * scale], [0, scale, TEXTURE / 2 - cy * scale]], np.float32)
    texture = cv2.warpAffine(rgb, matrix, (TEXTURE, TEXTURE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    points = face.copy()
    points[:, :2] = points[:, :2] * scale + matrix[:, 2]
    points[:, 2] *= scale
    texture = _close_mouth(texture, points)
    mesh = FaceMesh(*_triangulate(points), faces_found=len(faces), notes=notes)
    return texture, mesh


def _close_mouth(texture: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The texture with the photo's mouth closed: what lies between its inner lips (teeth, the mouth's darkness)
    and whatever shows teeth within the lips is painted over from the lips around it (OpenCV's inpainting).
    The mesh leaves the inner lips' inside empty, so that an opening shows the renderers' inner mouth; a
    closed mouth then shows lips, not the photo's teeth squeezed into a band a face landmarker reads as parted."""
    def polygon(ids):
        mask = np.zeros(texture.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(points[list(ids), :2] * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
        return mask > 0
    outer, inner = polygon(OUTER_LIPS), polygon(INNER_LIPS)
    lips = outer & ~inner
    if lips.sum() < 20:
        return texture
    lab = cv2.cvtColor(texture, cv2.COLOR_RGB2LAB).astype(np.float32)
    lip_l, lip_a = np.median(lab[lips][:, :2], axis=0)
    teeth = outer & (lab[:, :, 1] < lip_a - 5) & (lab[:, :, 0] > lip_l - 10)     # less red, as light: teeth
    mask = cv2.dilate((inner | teeth).astype(np.uint8) * 255, np.ones((3, 3), np.uint8), iterations=2)
    mask[~outer] = 0
    return cv2.inpaint(np.ascontiguousarray(texture), mask, 5, cv2.INPAINT_TELEA)


def _triangulate(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face points plus fixed points (the texture's border and a ring around the face), triangulated; the
    triangles inside the inner lips and the eyes are left out (open_holes)."""
    t = np.linspace(0, TEXTURE - 1, BORDER_STEPS + 1)
    edge = [(x, 0) for x in t] + [(x, TEXTURE - 1) for x in t] + [(0, y) for y in t[1:-1]] + \
           [(TEXTURE - 1, y) for y in t[1:-1]]
    centre = face[:, :2].mean(0)
    radius = np.linalg.norm(face[:, :2] - centre, axis=1).max() * 1.35
    angles = np.linspace(0, 2 * np.pi, 4 * BORDER_STEPS, endpoint=False)
    ring = [(centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)) for a in angles]
    ring = [(min(max(x, 1), TEXTURE - 2), min(max(y, 1), TEXTURE - 2)) for x, y in ring]
    fixed = np.array(edge + ring, np.float32)
    points = np.vstack([face, np.column_stack([fixed, np.zeros(len(fixed), np.float32)])])
    return points, open_holes(Delaunay(points[:, :2]).simplices.astype(np.int32))


def open_holes(triangles: np.ndarray) -> np.ndarray:
    """The triangles without those inside the inner lips and inside each eye's contour: the mouth's opening and
    the eyes' show the layer the renderers draw behind the face (the inner mouth; the eyeballs, which a closing
    lid covers rather than squeezes). Meshes made before the eyes were opened get them opened here too."""
    holes = [set(INNER_LIPS)] + [set(contour) | set(range(468 + 5 * k, 473 + 5 * k))
                                 for k, contour in enumerate(EYE_CONTOURS)]
    inside = np.array([any(all(int(i) in hole for i in tri) for hole in holes) for tri in triangles], bool)
    return triangles[~inside] if len(triangles) else triangles
