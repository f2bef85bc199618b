"""Copies the browser's vendor files into static/vendor/ and assembles face_landmarker.task.

Run after `npm ci`: `.venv/bin/python scripts/build_assets.py`. It is idempotent: files already up to date
are left alone. What it writes:
    static/vendor/vision_bundle.mjs          @mediapipe/tasks-vision (FaceLandmarker, FilesetResolver)
    static/vendor/wasm/                      its wasm runtime
    static/vendor/msgpack/                   @msgpack/msgpack's browser ESM build
    static/vendor/face_landmarker.task       a stored zip of two tflite models from the mediapipe wheel

The Tasks FaceLandmarker graph of @mediapipe/tasks-vision decodes one tensor of 478 points (1434 values) and a
face flag. mediapipe 0.10.21 ships the face mesh with attention (face_landmark_with_attention.tflite, the model
the Python face mesh runs with refine_landmarks): 468 mesh points plus refined lips, eyes and irises as six
separate tensors, which mediapipe's own graph merges (LandmarksRefinementCalculator). Here that merge goes into
the model itself: its outputs are flattened, concatenated and gathered into the 478 points (each refined x, y
in place of the mesh's, the mesh's z kept; an iris point takes its eye's mid-lid z), so the browser reads
eyes, lips and irises as the server does. The model's own operators are untouched; its custom ones
(TransformTensorBilinear, TransformLandmarks, Landmarks2TransformMatrix) are in the tasks-vision runtime.
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
    "face_landmarks_detector.tflite": "modules/face_landmark/face_landmark_with_attention.tflite",
}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)   # fixed, so the zip's bytes do not change between runs
MESH_POINTS = 468
# The attention model's refined outputs, in its order, with the mesh points each refines (mediapipe's face mesh
# graph, LandmarksRefinementCalculator): x, y pairs; z stays the mesh's
REFINED = {
    "output_lips": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
                    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
                    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407),
    "output_left_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
                        130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
                        226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
                        35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
                        156, 70, 63, 105, 66, 107, 55, 193),
    "output_right_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
                         359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
                         446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
                         265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
                         383, 300, 293, 334, 296, 336, 285, 417),
    "output_left_iris": (468, 469, 470, 471, 472),
    "output_right_iris": (473, 474, 475, 476, 477),
}
IRIS_DEPTH = {"output_left_iris": 159, "output_right_iris": 386}    # the mid upper lid, whose z an iris takes
LANDMARKS = MESH_POINTS + 10


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


def refined_gather() -> np.ndarray:
    """Indices into [mesh (1404) | lips | left eye | right eye | left iris | right iris] (all flattened) giving
    the 478 points' x, y, z: mediapipe's refinement, later outputs over earlier ones."""
    index = np.arange(LANDMARKS * 3, dtype=np.int32).reshape(LANDMARKS, 3)
    index[MESH_POINTS:] = -1
    start = MESH_POINTS * 3
    for name, points in REFINED.items():
        for k, point in enumerate(points):
            index[point, :2] = (start + 2 * k, start + 2 * k + 1)
            if name in IRIS_DEPTH:
                index[point, 2] = IRIS_DEPTH[name] * 3 + 2
        start += 2 * len(points)
    assert (index >= 0).all()
    return index.reshape(-1)


def attention_landmarks(tflite: bytes, schema) -> bytes:
    """face_landmark_with_attention.tflite -> the same model putting out the 478 refined points as one tensor
    [1, 1, 1, 1434] and the face flag (see the module docstring)."""
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    by_name = {graph.tensors[i].name.decode(): i for i in graph.outputs}
    missing = {"output_mesh_identity", "conv_faceflag", *REFINED} - set(by_name)
    if missing:
        raise SystemExit(f"face_landmark_with_attention.tflite: outputs {sorted(missing)} are missing")

    def code(op: int) -> int:
        for i, c in enumerate(model.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == op and not c.customCode:
                return i
        c = schema.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = op
        c.version = 1
        model.operatorCodes.append(c)
        return len(model.operatorCodes) - 1

    def tensor(name: str, shape: list[int], kind: int = schema.TensorType.FLOAT32, data: np.ndarray | None = None):
        t = schema.TensorT()
        t.name, t.shape, t.type = name.encode(), np.array(shape, np.int32), kind
        t.buffer = 0
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(data.tobytes(), np.uint8)
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def operator(op: int, inputs: list[int], outputs: list[int], kind: int, options) -> None:
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code(op), np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = kind, options
        graph.operators.append(o)

    def reshape(source: int, shape: list[int], name: str) -> int:
        out = tensor(name, shape)
        options = schema.ReshapeOptionsT()
        options.newShape = np.array(shape, np.int32)
        new_shape = tensor(name + "_shape", [len(shape)], schema.TensorType.INT32, np.array(shape, np.int32))
        operator(schema.BuiltinOperator.RESHAPE, [source, new_shape], [out], schema.BuiltinOptions.ReshapeOptions,
                 options)
        return out

    parts = ["output_mesh_identity", *REFINED]
    flat = [reshape(by_name[n], [1, int(graph.tensors[by_name[n]].shape[-1])], f"{n}_flat") for n in parts]
    total = sum(int(graph.tensors[by_name[n]].shape[-1]) for n in parts)
    joined = tensor("refined_all", [1, total])
    options = schema.ConcatenationOptionsT()
    options.axis = 1
    operator(schema.BuiltinOperator.CONCATENATION, flat, [joined], schema.BuiltinOptions.ConcatenationOptions,
             options)
    gather = refined_gather()
    gathered = tensor("refined_landmarks_flat", [1, len(gather)])
    options = schema.GatherOptionsT()
    options.axis = 1
    operator(schema.BuiltinOperator.GATHER, [joined, tensor("refined_index", [len(gather)], schema.TensorType.INT32,
                                                             gather)],
             [gathered], schema.BuiltinOptions.GatherOptions, options)
    landmarks = reshape(gathered, [1, 1, 1, len(gather)], "refined_landmarks")
    graph.outputs = np.array([landmarks, by_name["conv_faceflag"]], np.int32)
    for sig in model.signatureDefs or []:           # (none in 0.10.21's file; kept consistent if there were)
        sig.outputs = []
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
    models["face_landmarks_detector.tflite"] = attention_landmarks(models["face_landmarks_detector.tflite"],
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
