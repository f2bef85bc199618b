// The PoseData payload of POSE (docs/PROTOCOL.md, "PoseData"): 17 face fields quantized to 5-8 bits, sent as
// key frames or as deltas against a key frame. Mirrors wire/posedata.py.
import { ProtocolError } from "./errors.js";

// [name, lo, hi] in wire order.
export const FIELDS = Object.freeze([
  ["yaw", -1.5, 1.5], ["pitch", -1.5, 1.5], ["roll", -1.5, 1.5],
  ["x", -1, 1], ["y", -1, 1], ["z", -1, 1],
  ["eye_l", 0, 1], ["eye_r", 0, 1], ["gaze_x", -1, 1], ["gaze_y", -1, 1],
  ["brow_l", -1, 1], ["brow_r", -1, 1],
  ["mouth_open", 0, 1], ["mouth_wide", 0, 1], ["mouth_round", 0, 1], ["smile", -1, 1], ["jaw_open", 0, 1],
]);
export const FIELD_NAMES = Object.freeze(FIELDS.map((f) => f[0]));
export const FIELD_COUNT = FIELDS.length;
export const PRECISIONS = Object.freeze([8, 7, 6, 5]);
const MASK_BYTES = 3;
const KEY_FLAG = 0x80;

/** The pose a face at rest has: eyes open, everything else centred. */
export function neutralPose() {
  const pose = {};
  for (const [name, lo, hi] of FIELDS) pose[name] = name.startsWith("eye_") ? 1 : Math.min(Math.max(0, lo), hi);
  return pose;
}

function precisionCode(bits) {
  const code = PRECISIONS.indexOf(bits);
  if (code < 0) throw new ProtocolError("invalid_field", `unsupported precision ${bits} bits`);
  return code;
}

// Python's round(): halves go to the even neighbour, so both codecs write the same bytes.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Floats (an object by name, missing names neutral) -> integers in [0, 2^bits - 1]. */
export function quantize(values, bits) {
  const top = (1 << bits) - 1;
  const neutral = neutralPose();
  return FIELDS.map(([name, lo, hi]) => {
    const v = name in values ? values[name] : neutral[name];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ProtocolError("invalid_field", `${name} is not a finite number`);
    }
    return roundHalfEven(((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * top);
  });
}

export function dequantize(q, bits) {
  const top = (1 << bits) - 1;
  const out = {};
  FIELDS.forEach(([name, lo, hi], i) => { out[name] = lo + ((hi - lo) * q[i]) / top; });
  return out;
}

function packedLength(count, bits) {
  return Math.ceil((count * bits) / 8);
}

function pack(values, bits, out, offset) {
  let bit = offset * 8;
  for (const v of values) {
    for (let b = bits - 1; b >= 0; b--, bit++) {
      if ((v >> b) & 1) out[bit >> 3] |= 0x80 >> (bit & 7);
    }
  }
}

function unpack(data, offset, count, bits) {
  const values = [];
  let bit = offset * 8;
  for (let i = 0; i < count; i++) {
    let v = 0;
    for (let b = 0; b < bits; b++, bit++) v = (v << 1) | ((data[bit >> 3] >> (7 - (bit & 7))) & 1);
    values.push(v);
  }
  return values;
}

/** Bytes in a key frame at `bits`: the header, seq and every field packed. */
export const keySize = (bits) => 2 + packedLength(FIELD_COUNT, bits);

export function encodeKey(q, bits, keyId, seq) {
  const out = new Uint8Array(keySize(bits));
  out[0] = KEY_FLAG | (precisionCode(bits) << 5) | (keyId & 0x1f);
  out[1] = seq & 0xff;
  pack(q, bits, out, 2);
  return out;
}

/** Only the fields that differ from the key frame's values `keyQ` are written. */
export function encodeDelta(q, keyQ, bits, keyId, seq) {
  let mask = 0;
  const present = [];
  q.forEach((v, i) => {
    if (v !== keyQ[i]) { mask |= 1 << i; present.push(v); }
  });
  const out = new Uint8Array(2 + MASK_BYTES + packedLength(present.length, bits));
  out[0] = (precisionCode(bits) << 5) | (keyId & 0x1f);
  out[1] = seq & 0xff;
  out[2] = mask & 0xff; out[3] = (mask >> 8) & 0xff; out[4] = (mask >> 16) & 0xff;
  pack(present, bits, out, 2 + MASK_BYTES);
  return out;
}

function maskOf(data) {
  return data[2] | (data[3] << 8) | (data[4] << 16);
}

function bitCount(n) {
  let c = 0;
  for (; n; n &= n - 1) c++;
  return c;
}

/** Header of a payload, its length checked: {key, bits, keyId, seq}. */
export function validatePose(data) {
  if (data.length < 2) throw new ProtocolError("invalid_field", "pose payload shorter than its header");
  const head = { key: Boolean(data[0] & KEY_FLAG), bits: PRECISIONS[(data[0] >> 5) & 3], keyId: data[0] & 0x1f, seq: data[1] };
  let expected;
  if (head.key) {
    expected = keySize(head.bits);
  } else {
    if (data.length < 2 + MASK_BYTES) throw new ProtocolError("invalid_field", "delta frame shorter than its mask");
    const mask = maskOf(data);
    if (mask >> FIELD_COUNT) throw new ProtocolError("invalid_field", "delta mask names fields that do not exist");
    expected = 2 + MASK_BYTES + packedLength(bitCount(mask), head.bits);
  }
  if (data.length !== expected) {
    throw new ProtocolError("invalid_field", `pose payload is ${data.length} bytes, its header says ${expected}`);
  }
  return head;
}

/** Payload -> {head, q}. A delta needs its key frame's values `keyQ`. */
export function decodePose(data, keyQ = null) {
  const head = validatePose(data);
  if (head.key) return { head, q: unpack(data, 2, FIELD_COUNT, head.bits) };
  if (!keyQ) throw new ProtocolError("invalid_field", "delta frame without its key frame");
  const mask = maskOf(data);
  const present = unpack(data, 2 + MASK_BYTES, bitCount(mask), head.bits);
  let j = 0;
  return { head, q: keyQ.map((k, i) => ((mask >> i) & 1 ? present[j++] : k)) };
}
