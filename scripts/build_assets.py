"""Copies the browser's vendor files into static/vendor/ and assembles face_landmarker.task.

Run after `npm ci`: `.venv/bin/python scripts/build_assets.py`. It is idempotent: files already up to date
are left alone. What it writes:
    static/vendor/vision_bundle.mjs          @mediapipe/tasks-vision (FaceLandmarker, FilesetResolver)
    static/vendor/wasm/                      its wasm runtime
    static/vendor/msgpack/                   @msgpack/msgpack's browser ESM build
    static/vendor/face_landmarker.task       a stored zip of two tflite models from the mediapipe wheel
"""
from __future__ import annotations

import filecmp
import importlib.util
import io
import logging
import pathlib
import shutil
import sys
import zipfile

log = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules"
VENDOR = ROOT / "static" / "vendor"
TASKS_VISION = NODE / "@mediapipe" / "tasks-vision"
MSGPACK_ESM = NODE / "@msgpack" / "msgpack" / "dist.esm"

# member name in the .task zip -> path inside the mediapipe package (0.10.21 ships these models)
TASK_MEMBERS = {
    "face_detector.tflite": "modules/face_detection/face_detection_short_range.tflite",
    "face_landmarks_detector.tflite": "modules/face_landmark/face_landmark.tflite",
}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)   # fixed, so the zip's bytes do not change between runs


def copy_file(src: pathlib.Path, dst: pathlib.Path) -> bool:
    """Copy unless `dst` already holds the same bytes; True when it wrote."""
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def copy_tree(src: pathlib.Path, dst: pathlib.Path, suffixes: tuple[str, ...]) -> int:
    written = 0
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.name.endswith(suffixes):
            written += copy_file(path, dst / path.relative_to(src))
    return written


def mediapipe_dir() -> pathlib.Path:
    """The installed mediapipe package, found without importing it (importing pulls in heavy dependencies)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise SystemExit("mediapipe (0.10.21) is not installed in this Python; see requirements-nodeps.txt")
    return pathlib.Path(spec.origin).parent


def task_bytes(mp_dir: pathlib.Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, rel in TASK_MEMBERS.items():
            src = mp_dir / rel
            if not src.is_file():
                raise SystemExit(f"{src} is missing: mediapipe 0.10.21 is needed for its bundled face models")
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, src.read_bytes())
    return buf.getvalue()


def write_task(dst: pathlib.Path) -> bool:
    data = task_bytes(mediapipe_dir())
    if dst.exists() and dst.read_bytes() == data:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(dst)
    return True


def build(vendor: pathlib.Path = VENDOR) -> int:
    """Brings static/vendor up to date; returns the number of files written."""
    for needed in (TASKS_VISION / "vision_bundle.mjs", MSGPACK_ESM / "index.mjs"):
        if not needed.is_file():
            raise SystemExit(f"{needed} is missing: run `npm ci` first")
    written = copy_file(TASKS_VISION / "vision_bundle.mjs", vendor / "vision_bundle.mjs")
    written += copy_tree(TASKS_VISION / "wasm", vendor / "wasm", (".js", ".wasm"))
    written += copy_tree(MSGPACK_ESM, vendor / "msgpack", (".mjs",))
    written += write_task(vendor / "face_landmarker.task")
    return written


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = build()
    log.info("static/vendor: %d file(s) written", n)


if __name__ == "__main__":
    sys.exit(main())
