"""PoseData: a face's pose and expression, quantized and bit-packed for the wire.

Layout of the payload (see docs/PROTOCOL.md):
    byte 0  header: bit 7 key frame, bits 6-5 precision code, bits 4-0 key id
    byte 1  seq (mod 256)
    key:    all FIELDS, each `bits` wide, packed MSB first
    delta:  3-byte mask (bit i = field i present, LSB first), then the present fields
A delta frame is relative to the key frame with the same key id, so dropping any delta never corrupts
a receiver, and a receiver that missed a key frame waits for the next one (at most one second away).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# (name, low, high): the order is the wire order and never changes within a protocol version.
FIELDS: tuple[tuple[str, float, float], ...] = (
    ("yaw", -1.5, 1.5),          # head rotation, radians
    ("pitch", -1.5, 1.5),
    ("roll", -1.5, 1.5),
    ("x", -1.0, 1.0),            # head position, fraction of half the frame
    ("y", -1.0, 1.0),
    ("z", -1.0, 1.0),            # nearer (+) or farther (-) than neutral
    ("eye_l", 0.0, 1.0),         # eye openness
    ("eye_r", 0.0, 1.0),
    ("gaze_x", -1.0, 1.0),
    ("gaze_y", -1.0, 1.0),
    ("brow_l", -1.0, 1.0),       # raised (+) or frowning (-)
    ("brow_r", -1.0, 1.0),
    ("mouth_open", 0.0, 1.0),    # lip gap
    ("mouth_wide", 0.0, 1.0),    # lip corners apart
    ("mouth_round", 0.0, 1.0),   # pucker, "oo"
    ("smile", -1.0, 1.0),
    ("jaw_open", 0.0, 1.0),
)
FIELD_NAMES = tuple(name for name, _, _ in FIELDS)
FIELD_COUNT = len(FIELDS)
PRECISIONS = (8, 7, 6, 5)        # precision code -> bits per value
MASK_BYTES = 3
KEY_FLAG = 0x80


class PoseDataError(ValueError):
    """A pose payload that does not follow the layout."""


@dataclass(frozen=True, slots=True)
class PoseHeader:
    key: bool
    bits: int
    key_id: int
    seq: int


def precision_code(bits: int) -> int:
    try:
        return PRECISIONS.index(bits)
    except ValueError:
        raise PoseDataError(f"unsupported precision {bits} bits") from None


def quantize(values: dict[str, float] | list[float], bits: int) -> list[int]:
    """Floats (by name or in FIELDS order) -> integers in [0, 2**bits - 1]; NaN and infinities are refused."""
    seq = [values.get(name, _neutral(i)) for i, name in enumerate(FIELD_NAMES)] if isinstance(values, dict) else list(values)
    if len(seq) != FIELD_COUNT:
        raise PoseDataError(f"expected {FIELD_COUNT} values, got {len(seq)}")
    top = (1 << bits) - 1
    out = []
    for v, (name, lo, hi) in zip(seq, FIELDS, strict=False):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PoseDataError(f"{name} is not a finite number")
        v = min(max(float(v), lo), hi)
        out.append(round((v - lo) / (hi - lo) * top))
    return out


def dequantize(q: list[int], bits: int) -> dict[str, float]:
    top = (1 << bits) - 1
    return {name: lo + (hi - lo) * v / top for v, (name, lo, hi) in zip(q, FIELDS, strict=False)}


def _neutral(i: int) -> float:
    name, lo, hi = FIELDS[i]
    return 1.0 if name.startswith("eye_") else min(max(0.0, lo), hi)


def encode_key(q: list[int], bits: int, key_id: int, seq: int) -> bytes:
    header = KEY_FLAG | precision_code(bits) << 5 | (key_id & 0x1F)
    return bytes((header, seq & 0xFF)) + _pack(q, bits)


def key_size(bits: int) -> int:
    """Bytes in a key frame at `bits`: the header, seq and every field packed."""
    return 2 + _packed_len(FIELD_COUNT, bits)


def encode_delta(q: list[int], key_q: list[int], bits: int, key_id: int, seq: int) -> bytes:
    """Only the fields that differ from the key frame `key_q` are sent."""
    header = precision_code(bits) << 5 | (key_id & 0x1F)
    mask, present = 0, []
    for i, (v, k) in enumerate(zip(q, key_q, strict=False)):
        if v != k:
            mask |= 1 << i
            present.append(v)
    return bytes((header, seq & 0xFF)) + mask.to_bytes(MASK_BYTES, "little") + _pack(present, bits)


def read_header(data: bytes) -> PoseHeader:
    if len(data) < 2:
        raise PoseDataError("pose payload shorter than its header")
    h = data[0]
    return PoseHeader(bool(h & KEY_FLAG), PRECISIONS[(h >> 5) & 0x3], h & 0x1F, data[1])


def validate(data: bytes) -> PoseHeader:
    """Check a payload's length and mask against its header without unpacking the values."""
    head = read_header(data)
    if head.key:
        expected = key_size(head.bits)
    else:
        if len(data) < 2 + MASK_BYTES:
            raise PoseDataError("delta frame shorter than its mask")
        mask = int.from_bytes(data[2:2 + MASK_BYTES], "little")
        if mask >> FIELD_COUNT:
            raise PoseDataError("delta mask names fields that do not exist")
        expected = 2 + MASK_BYTES + _packed_len(mask.bit_count(), head.bits)
    if len(data) != expected:
        raise PoseDataError(f"pose payload is {len(data)} bytes, its header says {expected}")
    return head


def decode(data: bytes, key_q: list[int] | None = None) -> tuple[PoseHeader, list[int]]:
    """Payload -> (header, quantized values). A delta needs the values of its key frame."""
    head = validate(data)
    if head.key:
        return head, _unpack(data[2:], FIELD_COUNT, head.bits)
    if key_q is None:
        raise PoseDataError("delta frame without its key frame")
    mask = int.from_bytes(data[2:2 + MASK_BYTES], "little")
    present = iter(_unpack(data[2 + MASK_BYTES:], mask.bit_count(), head.bits))
    return head, [next(present) if mask >> i & 1 else k for i, k in enumerate(key_q)]


def _packed_len(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def _pack(values: list[int], bits: int) -> bytes:
    acc = 0
    for v in values:
        acc = acc << bits | v
    n = len(values) * bits
    pad = -n % 8
    return (acc << pad).to_bytes((n + pad) // 8, "big")


def _unpack(data: bytes, count: int, bits: int) -> list[int]:
    acc = int.from_bytes(data, "big") >> (len(data) * 8 - count * bits)
    top = (1 << bits) - 1
    return [(acc >> (bits * (count - 1 - i))) & top for i in range(count)]


class PoseStream:
    """A sender's stream, as the browser sends it (static/js/posestream.js): a key frame every `key_every`
    frames (and whenever the precision changes), key ids 0, 1, … mod 32, deltas against the latest key. A
    delta that would be as large as a key frame (most fields moved) is sent as a key frame instead: it costs
    nothing more, and the deltas after it are taken against a fresher face."""

    def __init__(self, bits: int, key_every: int):
        self.bits, self.key_every = bits, max(1, key_every)
        self.frame, self.key_id, self.key_q = 0, -1, None

    def set_tier(self, bits: int, key_every: int) -> None:
        if bits != self.bits:
            self.key_q = None                     # the next frame is a key frame at the new precision
        self.bits, self.key_every = bits, max(1, key_every)

    def encode(self, q: list[int]) -> bytes:
        """Quantized values (at `self.bits`) -> the next payload."""
        data = None
        if self.key_q is not None and self.frame % self.key_every:
            data = encode_delta(q, self.key_q, self.bits, self.key_id, self.frame)
            if len(data) >= key_size(self.bits):
                data = None
        if data is None:
            self.key_id = (self.key_id + 1) & 0x1F
            self.key_q = q
            data = encode_key(q, self.bits, self.key_id, self.frame)
        self.frame += 1
        return data

    def encode_values(self, values: dict[str, float]) -> bytes:
        return self.encode(quantize(values, self.bits))


class PoseReceiver:
    """A receiver's view of every sender's face: key frames kept by (sender, key id), deltas applied to them.
    A delta whose key frame never arrived is skipped, as the page does."""

    def __init__(self):
        self._keys: dict[int, tuple[int, list[int]]] = {}

    def read(self, sender: int, data: bytes) -> dict[str, float] | None:
        head = read_header(data)
        if head.key:
            _, q = decode(data)
            self._keys[sender] = (head.key_id, q)
        else:
            key = self._keys.get(sender)
            if key is None or key[0] != head.key_id:
                return None
            _, q = decode(data, key[1])
        return dequantize(q, head.bits)
