"""Photo avatars on disk: a photo (or a short video) -> its face texture and mesh (avatars.face), one directory
per avatar (docs/AVATARS.md):

    <dir>/<name>/texture.png   the 512 x 512 face texture
    <dir>/<name>/mesh.json     FaceMesh.as_json()
    <dir>/<name>/preview.png   256 x 256 (for now the texture, scaled)
    <dir>/<name>/meta.json     AvatarInfo: {name, created_at, faces_found, notes, source, width, height, version}
    <dir>/default.json         {"name": …}: the default avatar of new one-to-one sessions

An avatar is written whole into a hidden temporary directory beside the others and then renamed into place: a
failure leaves nothing and nobody sees half an avatar. The shipped default, "astronaut", is made on first use
from scikit-image's bundled NASA photo (public domain). No Flask here.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from meeting.errors import InvalidRequest, MeetingError

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BUILTIN = "astronaut"                    # the shipped default, always there
FILES = ("texture.png", "mesh.json", "preview.png", "meta.json")
PREVIEW = 256
MAX_SIDE = 2048                          # larger photos and frames are scaled down before the face mesh
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")   # JPEG includes MPO; no EPS & co (they run programs)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm")
IMAGE_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis")  # ISO BMFF (like MP4) but pictures
VIDEO_SECONDS = 10                       # of a video, only the start is looked at …
VIDEO_STEP = 5                           # … one frame in this many


class NotAnImage(MeetingError):
    code = "not_an_image"


class BadImage(MeetingError):
    code = "bad_image"


class ImageTooLarge(MeetingError):
    code = "image_too_large"


class TooLarge(MeetingError):
    code = "too_large"


class NoFace(MeetingError):
    code = "no_face"


class AvatarExists(MeetingError):
    code = "avatar_exists"


class AvatarNotFound(MeetingError):
    code = "avatar_not_found"


class AvatarProtected(MeetingError):
    code = "avatar_protected"


@dataclass
class AvatarInfo:
    name: str
    created_at: float
    faces_found: int
    notes: list[str]
    source: str                          # "photo" or "video"
    width: int                           # of the photo (upright) or of the video's frames
    height: int
    version: str                         # changes when the files do (a name deleted and made again)


class AvatarStore:
    """The avatars in a directory: made from a photo or a video, listed, read, deleted; the default."""

    def __init__(self, directory: str, max_bytes: int, max_pixels: int = 40_000_000):
        self.directory = pathlib.Path(directory).expanduser()
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self._builtin_lock = threading.Lock()

    def ensure(self) -> pathlib.Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def create(self, name: str, data: bytes, filename: str = "") -> AvatarInfo:
        """A new avatar from a photo's or a short video's bytes. Raises a MeetingError (see the codes above)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequest("name must be 1-64 letters, digits, _ or -, starting with a letter or digit")
        if name == BUILTIN or (self.directory / name).exists():
            raise AvatarExists(f"an avatar {name!r} exists: choose another name or delete it first")
        if len(data) > self.max_bytes:
            raise TooLarge(f"the file is over the limit of {self.max_bytes >> 20} MB")
        if is_video(data, filename):
            width, height, rgb = self._video_frame(data)
            return self._make(name, rgb, "video", width, height)
        rgb = decode_photo(data, self.max_pixels)
        return self._make(name, rgb, "photo", rgb.shape[1], rgb.shape[0])

    def ensure_default(self) -> None:
        """Make the shipped default avatar if it is not there yet (about a second, once)."""
        if (self.directory / BUILTIN / "meta.json").exists():
            return
        with self._builtin_lock:
            if (self.directory / BUILTIN / "meta.json").exists():
                return
            from skimage import data
            photo = data.astronaut()
            try:
                self._make(BUILTIN, photo, "photo", photo.shape[1], photo.shape[0])
            except AvatarExists:             # another process made it meanwhile
                pass

    def list(self) -> list[AvatarInfo]:
        """Every avatar: the shipped default first, then the others oldest first."""
        self.ensure_default()
        out = []
        for meta in self.directory.glob("*/meta.json"):
            if NAME.match(meta.parent.name):     # not the temporary directories of avatars being made
                try:
                    out.append(AvatarInfo(**json.loads(meta.read_text())))
                except (OSError, ValueError, TypeError):
                    log.warning("avatar %s: meta.json unreadable, skipped", meta.parent.name)
        return sorted(out, key=lambda a: (a.name != BUILTIN, a.created_at, a.name))

    def get(self, name: str) -> AvatarInfo:
        if name == BUILTIN:
            self.ensure_default()
        try:
            return AvatarInfo(**json.loads((self._dir(name) / "meta.json").read_text()))
        except FileNotFoundError:
            raise AvatarNotFound(f"no avatar {name!r}") from None

    def path(self, name: str, filename: str) -> pathlib.Path:
        """One of an avatar's FILES (which must exist: get() first)."""
        if filename not in FILES:
            raise AvatarNotFound(f"an avatar has no file {filename!r}")
        return self._dir(name) / filename

    def texture_path(self, name: str) -> pathlib.Path:
        return self.path(self.get(name).name, "texture.png")

    def mesh(self, name: str):
        """The avatar's rest shape, an avatars.face.FaceMesh."""
        from avatars.face import FaceMesh
        return FaceMesh.from_json(json.loads(self.path(self.get(name).name, "mesh.json").read_text()))

    def delete(self, name: str) -> None:
        """Deletes the avatar; when it was the default, the shipped default takes its place."""
        self.get(name)
        if name == BUILTIN:
            raise AvatarProtected(f"{BUILTIN!r} is the shipped default avatar: it cannot be deleted")
        was_default = self.default_name() == name
        gone = pathlib.Path(tempfile.mkdtemp(prefix=".gone-", dir=self.directory))
        try:
            os.rename(self._dir(name), gone / name)      # out of sight at once, then removed
            if was_default:
                (self.directory / "default.json").unlink(missing_ok=True)
        except FileNotFoundError:                        # deleted meanwhile by another request
            raise AvatarNotFound(f"no avatar {name!r}") from None
        finally:
            shutil.rmtree(gone, ignore_errors=True)

    def default_name(self) -> str:
        """The default avatar of new one-to-one sessions: the one set, while it exists, else the shipped one."""
        try:
            name = json.loads((self.directory / "default.json").read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError):
            return BUILTIN
        if isinstance(name, str) and NAME.match(name) and (self.directory / name / "meta.json").exists():
            return name
        return BUILTIN

    def set_default(self, name: str) -> str:
        name = self.get(name).name
        _write(self.ensure() / "default.json", json.dumps({"name": name}).encode())
        return name

    def _dir(self, name: str) -> pathlib.Path:
        if not isinstance(name, str) or not NAME.match(name):
            raise AvatarNotFound(f"no avatar {name!r}")
        return self.directory / name

    def _make(self, name: str, rgb: np.ndarray, source: str, width: int, height: int) -> AvatarInfo:
        """Builds the avatar from an RGB picture into a temporary directory and renames that into place."""
        texture, mesh = build_avatar(rgb)
        pictures = {"texture.png": _png(texture), "preview.png": _png(texture, PREVIEW)}
        mesh_json = json.dumps(mesh.as_json(), separators=(",", ":")).encode()
        version = hashlib.sha1(pictures["texture.png"] + mesh_json).hexdigest()[:12]
        info = AvatarInfo(name, round(time.time(), 3), mesh.faces_found, list(mesh.notes), source, int(width),
                          int(height), version)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=".new-", dir=self.ensure()))
        try:
            for filename, data in {**pictures, "mesh.json": mesh_json,
                                   "meta.json": json.dumps(asdict(info)).encode()}.items():
                _write(tmp / filename, data)
            try:
                os.rename(tmp, self.directory / name)
            except OSError:                  # made meanwhile by another request (ENOTEMPTY)
                raise AvatarExists(f"an avatar {name!r} exists: choose another name or delete it first") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)    # after the rename there is nothing left to remove
        log.info("avatar %s made from a %s (%dx%d, %d faces)", name, source, width, height, mesh.faces_found)
        return info

    def _video_frame(self, data: bytes) -> tuple[int, int, np.ndarray]:
        """(width, height, the frame of the video's first VIDEO_SECONDS with the largest, most frontal face)."""
        import cv2
        if not _video_magic(data):
            raise NotAnImage("named like a video but not an MP4, MOV or WebM file")
        with tempfile.NamedTemporaryFile(prefix=".upload-", dir=self.ensure()) as file:
            file.write(data)
            file.flush()
            capture = cv2.VideoCapture(file.name, cv2.CAP_FFMPEG)
            try:
                if not capture.isOpened():
                    raise BadImage("the video could not be read: send an MP4, MOV or WebM file")
                width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                _check_pixels(width, height, self.max_pixels)
                best, seen = best_frame(_frames(capture))
            finally:
                capture.release()
        if not seen:
            raise BadImage("the video has no frames that could be decoded")
        if best is None:
            raise NoFace(f"no face found in the video's first {VIDEO_SECONDS} seconds: film one face looking at "
                         "the camera, well lit")
        return width, height, best


def build_avatar(rgb: np.ndarray):
    """An RGB picture -> (texture, avatars.face.FaceMesh), calibrated: what every avatar is made of, whether
    stored or not. Raises NoFace."""
    from avatars import face
    from avatars.calibrate import calibrate
    try:
        texture, mesh = face.build(_fit(rgb))
    except face.FaceError as exc:
        raise NoFace(exc.message) from None
    mesh.calibration = calibrate(texture, mesh)
    return texture, mesh


def decode_photo(data: bytes, max_pixels: int) -> np.ndarray:
    """A photo's bytes -> (H, W, 3) RGB uint8, upright (EXIF orientation applied). Raises NotAnImage,
    BadImage (damaged, truncated) or ImageTooLarge (more than max_pixels, or a decompression bomb)."""
    try:
        with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as image:
            _check_pixels(*image.size, max_pixels)      # from the header, before anything is decompressed
            image.verify()
        with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as image:
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image declares too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise NotAnImage("not a picture: send a JPEG, PNG or WebP photo, or a short MP4, MOV or WebM video") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"the image is damaged or truncated ({exc})") from None


def is_video(data: bytes, filename: str) -> bool:
    """A video by its magic bytes or by its name's extension."""
    return _video_magic(data) or pathlib.Path(filename or "").suffix.lower() in VIDEO_EXTENSIONS


def _video_magic(data: bytes) -> bool:
    """MP4 / MOV (an ISO BMFF box first, not a picture's brand) or WebM / Matroska (EBML)."""
    if data[:4] == b"\x1aE\xdf\xa3":
        return True
    return data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") and data[8:12] not in IMAGE_BRANDS


def _frames(capture) -> Iterator[np.ndarray]:
    """One RGB frame in VIDEO_STEP of the video's first VIDEO_SECONDS."""
    import cv2
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if 1 <= fps <= 240 else 30
    count = 0
    for i in range(int(fps * VIDEO_SECONDS)):
        if i % VIDEO_STEP:
            if not capture.grab():
                return
            continue
        ok, frame = capture.read()
        if not ok:
            return
        count += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def best_frame(frames) -> tuple[np.ndarray | None, int]:
    """(the frame whose largest face scores best, or None when no frame has a face; how many frames there were).
    A face's score is its area times cos(yaw): the largest face wins unless it is turned away."""
    from avatars.face import landmarks
    best, best_score, seen = None, 0.0, 0
    for frame in frames:
        seen += 1
        faces = landmarks(_fit(frame))
        if faces:
            score = float(np.ptp(faces[0][:, 0]) * np.ptp(faces[0][:, 1])) * np.cos(yaw(faces[0]))
            if score > best_score:
                best, best_score = frame, score
    return best, seen


def yaw(face: np.ndarray) -> float:
    """The head's turn in radians, from the cheeks' depth difference (landmarks 234 and 454, as static/js/pose.js)."""
    across = face[454] - face[234]
    return float(np.arctan2(across[2], np.hypot(across[0], across[1])))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(f"the picture is {width} x {height} pixels: at most {max_pixels / 1e6:.0f} megapixels")


def _fit(rgb: np.ndarray) -> np.ndarray:
    """The picture scaled down to MAX_SIDE pixels at most (the texture needs no more, the face mesh is faster)."""
    import cv2
    scale = MAX_SIDE / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _png(rgb: np.ndarray, side: int | None = None) -> bytes:
    image = Image.fromarray(rgb)
    if side:
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _write(path: pathlib.Path, data: bytes) -> None:
    """Writes a whole file and syncs it (it is renamed into place next: never an empty file after a crash)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
