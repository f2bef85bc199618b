// The data-channel protocol (docs/PROTOCOL.md): a msgpack envelope [version, type, ...fields] and the
// bit-packed PoseData payload. Mirrors connect/protocol.py and connect/posedata.py; tests/test_browser.py
// pins both to tests/golden/protocol.json.
import { encode as packMsg, decode as unpackMsg } from "../vendor/msgpack/index.mjs";

export const VERSION = 1;
export const MAX_MESSAGE_BYTES = 4096;
export const MAX_CHAT_CHARS = 1000;
const MAX_ID_CHARS = 64;
const MAX_SLOT = 63;
const VISEME_COUNT = 15;
const TS_MAX = 2 ** 53;

export const MsgType = Object.freeze({
  JOIN: 0, POSE: 1, VISEME: 2, CHAT: 3, PRESENCE: 4, TIER: 5, ERROR: 6, WELCOME: 7,
});
const TYPE_NAMES = Object.keys(MsgType);
export const Presence = Object.freeze({ SNAPSHOT: 0, JOINED: 1, LEFT: 2 });
export const CloseCode = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, UNSUPPORTED_DATA: 1003, TOO_BIG: 1009, BAD_MESSAGES: 4000,
  NOT_JOINED: 4001, UNSUPPORTED_VERSION: 4002, BAD_TOKEN: 4003, ROOM_NOT_FOUND: 4004,
  JOIN_TIMEOUT: 4008, DUPLICATE: 4009, TOO_SLOW: 4013, LEFT: 4014,
});

export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

// --- PoseData --------------------------------------------------------------------------------

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

export function encodeKey(q, bits, keyId, seq) {
  const out = new Uint8Array(2 + packedLength(FIELD_COUNT, bits));
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
    expected = 2 + packedLength(FIELD_COUNT, head.bits);
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

// --- envelope --------------------------------------------------------------------------------

/** A message object {type, ...fields} -> bytes. Server-side fields are written only when set. */
export function encodeMessage(msg) {
  const opt = (v) => (v === undefined || v === null ? [] : [v]);
  switch (msg.type) {
    case MsgType.JOIN: return packMsg([VERSION, MsgType.JOIN, msg.token]);
    case MsgType.POSE: return packMsg([VERSION, MsgType.POSE, msg.data, ...opt(msg.slot)]);
    case MsgType.CHAT: {
      const server = msg.slot === undefined || msg.slot === null ? [] : [msg.slot, msg.ts_ms];
      return packMsg([VERSION, MsgType.CHAT, msg.text, ...server]);
    }
    case MsgType.VISEME: return packMsg([VERSION, MsgType.VISEME, msg.t_ms, msg.viseme, msg.weight, ...opt(msg.slot)]);
    case MsgType.PRESENCE:
      return packMsg([VERSION, MsgType.PRESENCE, msg.event,
        msg.members.map((m) => [m.slot, m.user_id, m.name, m.host ? 1 : 0])]);
    case MsgType.TIER: return packMsg([VERSION, MsgType.TIER, msg.tier, msg.fps, msg.bits, msg.count]);
    case MsgType.ERROR: return packMsg([VERSION, MsgType.ERROR, msg.code, msg.message]);
    case MsgType.WELCOME: return packMsg([VERSION, MsgType.WELCOME, msg.slot, msg.room_id]);
    default: throw new TypeError(`not a protocol message: ${JSON.stringify(msg)}`);
  }
}

export const join = (token) => encodeMessage({ type: MsgType.JOIN, token });
export const pose = (data) => encodeMessage({ type: MsgType.POSE, data });
export const chat = (text) => encodeMessage({ type: MsgType.CHAT, text });

export function decodeServer(data) { return decodeMessage(data, true); }
export function decodeClient(data) { return decodeMessage(data, false); }

const LIMITS = { maxStrLength: MAX_MESSAGE_BYTES, maxBinLength: MAX_MESSAGE_BYTES, maxArrayLength: 64, maxMapLength: 16, maxExtLength: 0 };

function decodeMessage(data, fromServer) {
  if (typeof data === "string") throw new ProtocolError("text_frame", "messages are binary msgpack");
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length > MAX_MESSAGE_BYTES) throw new ProtocolError("too_large", `message over ${MAX_MESSAGE_BYTES} bytes`);
  let arr;
  try {
    arr = unpackMsg(bytes, LIMITS);
  } catch (err) {
    throw new ProtocolError("malformed", `not a msgpack message: ${err.message}`);
  }
  if (!Array.isArray(arr) || arr.length < 2) throw new ProtocolError("malformed", "a message is an array [version, type, ...]");
  const [version, type] = arr;
  if (!Number.isInteger(version)) throw new ProtocolError("malformed", "version must be an integer");
  if (version !== VERSION) throw new ProtocolError("unsupported_version", `protocol version ${version} is not ${VERSION}`);
  if (!Number.isInteger(type) || type < 0 || type >= TYPE_NAMES.length) {
    throw new ProtocolError("unknown_type", `unknown message type ${type}`);
  }
  const name = TYPE_NAMES[type];
  if (!fromServer && ![MsgType.JOIN, MsgType.POSE, MsgType.CHAT].includes(type)) {
    throw new ProtocolError("unknown_type", `clients do not send ${name} messages`);
  }
  const f = new Fields(arr.slice(2), name);
  const msg = { type, name, ...PARSERS[type](f, fromServer) };
  f.done();
  return msg;
}

class Fields {
  constructor(values, what) { this.values = values; this.what = what; this.i = 0; }

  next(name) {
    if (this.i >= this.values.length) throw new ProtocolError("invalid_field", `${this.what}: missing ${name}`);
    return this.values[this.i++];
  }

  int(name, lo, hi) {
    const v = this.next(name);
    if (!Number.isInteger(v)) throw new ProtocolError("invalid_field", `${this.what}: ${name} must be an integer`);
    if (v < lo || v > hi) throw new ProtocolError("invalid_field", `${this.what}: ${name}=${v} is outside ${lo}..${hi}`);
    return v;
  }

  str(name, maxChars, minChars = 1) {
    const v = this.next(name);
    const len = typeof v === "string" ? [...v].length : -1;
    if (len < minChars || len > maxChars) {
      throw new ProtocolError("invalid_field", `${this.what}: ${name} must be text of ${minChars}..${maxChars} characters`);
    }
    return v;
  }

  bin(name) {
    const v = this.next(name);
    if (!(v instanceof Uint8Array)) throw new ProtocolError("invalid_field", `${this.what}: ${name} must be binary`);
    return v;
  }

  list(name, maxLen) {
    const v = this.next(name);
    if (!Array.isArray(v) || v.length > maxLen) {
      throw new ProtocolError("invalid_field", `${this.what}: ${name} must be a list of at most ${maxLen}`);
    }
    return v;
  }

  done() {
    if (this.i !== this.values.length) {
      throw new ProtocolError("invalid_field", `${this.what}: ${this.values.length - this.i} unexpected extra fields`);
    }
  }
}

const slotIf = (f, server) => (server ? { slot: f.int("slot", 0, MAX_SLOT) } : {});

const PARSERS = {
  [MsgType.JOIN]: (f) => ({ token: f.str("token", 512) }),
  [MsgType.POSE]: (f, server) => {
    const data = f.bin("data");
    try { validatePose(data); } catch (err) { throw new ProtocolError("invalid_field", `POSE: ${err.message}`); }
    return { data, ...slotIf(f, server) };
  },
  [MsgType.VISEME]: (f, server) => ({
    t_ms: f.int("t_ms", 0, TS_MAX), viseme: f.int("viseme", 0, VISEME_COUNT - 1), weight: f.int("weight", 0, 255),
    ...slotIf(f, server),
  }),
  [MsgType.CHAT]: (f, server) => {
    const text = f.str("text", MAX_CHAT_CHARS);
    if (!text.trim()) throw new ProtocolError("invalid_field", "CHAT: text is blank");
    return server ? { text, slot: f.int("slot", 0, MAX_SLOT), ts_ms: f.int("ts_ms", 0, TS_MAX) } : { text };
  },
  [MsgType.PRESENCE]: (f) => {
    const event = f.int("event", 0, 2);
    const members = f.list("members", MAX_SLOT + 1).map((item) => {
      const m = new Fields(Array.isArray(item) ? item : [null], "PRESENCE member");
      const member = { slot: m.int("slot", 0, MAX_SLOT), user_id: m.str("user_id", MAX_ID_CHARS),
        name: m.str("name", MAX_ID_CHARS), host: m.int("host", 0, 1) === 1 };
      m.done();
      return member;
    });
    return { event, members };
  },
  [MsgType.TIER]: (f) => ({ tier: f.int("tier", 0, 15), fps: f.int("fps", 1, 120), bits: f.int("bits", 5, 8), count: f.int("count", 0, 1024) }),
  [MsgType.ERROR]: (f) => ({ code: f.str("code", 64), message: f.str("message", 1000, 0) }),
  [MsgType.WELCOME]: (f) => ({ slot: f.int("slot", 0, MAX_SLOT), room_id: f.str("room_id", MAX_ID_CHARS) }),
};
