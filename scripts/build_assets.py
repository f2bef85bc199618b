"""Copies the browser's vendor files into static/vendor/ and assembles face_landmarker.task.

Run after `npm ci`: `.venv/bin/python scripts/build_assets.py`. It is idempotent: files already up to date
are left alone. What it writes:
    static/vendor/vision_bundle.mjs          @mediapipe/tasks-vision (FaceLandmarker, FilesetResolver)
    static/vendor/wasm/                      its wasm runtime
    static/vendor/msgpack/                   @msgpack/msgpack's browser ESM build
    static/vendor/face_landmarker.task       a stored zip of two tflite models from the mediapipe wheel

The landmark model in mediapipe 0.10.21 (face_landmark.tflite) puts out 468 points (1404 values) while the
Tasks FaceLandmarker graph of @mediapipe/tasks-vision always decodes 478 points: it divides 1404 by 478, reads
the tensor as 2-D pairs and the landmarks come out scrambled with z = 0. So the model's last convolution gets
30 more output channels, the 10 iris points the graph expects, each the centre of its eye's contour (a model
without the iris stage has no better estimate). The first 1404 values are untouched.
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

import flatbuffers
import numpy as np

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
MESH_POINTS = 468
IRIS_POINTS = 5                     # per eye: centre and four edges
# The contour of each eye (image-left, then image-right) whose centre stands in for the iris.
EYE_CONTOURS = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
                (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398))


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


def tflite_schema(mp_dir: pathlib.Path):
    """The TFLite flatbuffer schema (object API) that ships inside mediapipe, loaded without importing mediapipe."""
    path = mp_dir / "tasks" / "metadata" / "schema_py_generated.py"
    spec = importlib.util.spec_from_file_location("_tflite_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _AlignedBuilder(flatbuffers.Builder):
    """Writes byte vectors (the model's weight buffers) 16-byte aligned, as TFLite's own converter does."""

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' naming
        if x.dtype != np.uint8:
            return super().CreateNumpyVector(x)
        payload = x.tobytes()
        self.StartVector(1, len(payload), 16)
        self.head -= len(payload)
        self.Bytes[self.head:self.head + len(payload)] = payload
        self.vectorNumElems = len(payload)
        return self.EndVector()


def _with_iris_rows(values: np.ndarray) -> np.ndarray:
    """Per-output-channel values [1404, ...] -> [1434, ...]: each iris point is its eye contour's mean."""
    points = values.reshape(MESH_POINTS, 3, -1)
    iris = [np.repeat(points[list(contour)].mean(axis=0, keepdims=True), IRIS_POINTS, axis=0)
            for contour in EYE_CONTOURS]
    return np.concatenate([points, *iris]).reshape((-1, *values.shape[1:]))


def landmarks_with_iris(tflite: bytes, schema) -> bytes:
    """face_landmark.tflite -> the same model with 478 points (see the module docstring)."""
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    out = graph.tensors[graph.outputs[0]]
    if out.shape[-1] != MESH_POINTS * 3:
        raise SystemExit(f"face_landmark.tflite: expected {MESH_POINTS * 3} landmark values, got {out.shape[-1]}")
    producer = {t: op for op in graph.operators for t in op.outputs}
    conv = producer[graph.outputs[0]]
    for dequantized in conv.inputs[1:3]:                      # weights and bias, stored as float16
        stored = graph.tensors[producer[dequantized].inputs[0]]
        if stored.type != schema.TensorType.FLOAT16:
            raise SystemExit("face_landmark.tflite: expected float16 weights for the landmark layer")
        buffer = model.buffers[stored.buffer]
        values = np.frombuffer(bytes(buffer.data), np.float16).astype(np.float32).reshape(stored.shape)
        grown = _with_iris_rows(values).astype(np.float16)
        buffer.data = np.frombuffer(grown.tobytes(), np.uint8)
        for tensor in (stored, graph.tensors[dequantized]):
            tensor.shape = np.array(grown.shape, np.int32)
    out.shape = np.array([*out.shape[:-1], (MESH_POINTS + 2 * IRIS_POINTS) * 3], np.int32)
    builder = _AlignedBuilder(len(tflite) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def task_bytes(mp_dir: pathlib.Path) -> bytes:
    models = {}
    for name, rel in TASK_MEMBERS.items():
        src = mp_dir / rel
        if not src.is_file():
            raise SystemExit(f"{src} is missing: mediapipe 0.10.21 is needed for its bundled face models")
        models[name] = src.read_bytes()
    models["face_landmarks_detector.tflite"] = landmarks_with_iris(models["face_landmarks_detector.tflite"],
                                                                   tflite_schema(mp_dir))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in models.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, data)
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
