// The data-channel protocol (docs/PROTOCOL.md): a msgpack envelope [version, type, ...fields]; the PoseData
// payload lives in posedata.js and is re-exported here. Mirrors wire/protocol.py; tests/test_browser.py
// pins both codecs to tests/golden/protocol.json.
import { encode as packMsg, decode as unpackMsg } from "../vendor/msgpack/index.mjs";
import { ProtocolError } from "./errors.js";
import { validatePose } from "./posedata.js";

export { ProtocolError } from "./errors.js";
export * from "./posedata.js";

export const VERSION = 1;
export const MAX_MESSAGE_BYTES = 4096;
export const MAX_CHAT_CHARS = 1000;
const MAX_ID_CHARS = 64;
const MAX_TOKEN_CHARS = 1024;          // a join or resume token (a JWT)
const MAX_SLOT = 63;
const VISEME_COUNT = 15;
const TS_MAX = 2 ** 53;
const SEQ_MAX = 0xffff;
const MAX_STATUS_CHARS = 200;

export const MsgType = Object.freeze({
  JOIN: 0, POSE: 1, VISEME: 2, CHAT: 3, PRESENCE: 4, TIER: 5, ERROR: 6, WELCOME: 7,
  AUDIO: 8, AUDIO_END: 9, HOST_STATUS: 10, BUNDLE: 11, BYE: 12, TICK: 13, RECORDING: 14,
});
const MAX_BUNDLE = 64;
const TYPE_NAMES = Object.keys(MsgType);
const CLIENT_TYPES = new Set([MsgType.JOIN, MsgType.POSE, MsgType.CHAT, MsgType.AUDIO, MsgType.AUDIO_END]);
export const Presence = Object.freeze({ SNAPSHOT: 0, JOINED: 1, LEFT: 2 });
export const AudioEnd = Object.freeze({ FINISHED: 0, INTERRUPTED: 1 });
export const HOST_STATES = Object.freeze(["loading", "listening", "thinking", "speaking", "idle", "error"]);
export const CloseCode = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, UNSUPPORTED_DATA: 1003, TOO_BIG: 1009, BAD_MESSAGES: 4000,
  NOT_JOINED: 4001, UNSUPPORTED_VERSION: 4002, BAD_TOKEN: 4003, ROOM_NOT_FOUND: 4004,
  JOIN_TIMEOUT: 4008, DUPLICATE: 4009, ROOM_FULL: 4010, TOO_SLOW: 4013, LEFT: 4014,
});

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
        msg.members.map((m) => [m.slot, m.user_id, m.name, m.host ? 1 : 0, ...(m.avatar ? [m.avatar] : [])])]);
    case MsgType.TIER: return packMsg([VERSION, MsgType.TIER, msg.tier, msg.fps, msg.bits, msg.count]);
    case MsgType.ERROR: return packMsg([VERSION, MsgType.ERROR, msg.code, msg.message]);
    case MsgType.WELCOME: return packMsg([VERSION, MsgType.WELCOME, msg.slot, msg.room_id, ...(msg.resume ? [msg.resume] : [])]);
    case MsgType.AUDIO: {
      const server = msg.slot === undefined || msg.slot === null ? [] : [msg.slot, msg.t_ms];
      return packMsg([VERSION, MsgType.AUDIO, msg.seq & SEQ_MAX, msg.data, ...server]);
    }
    case MsgType.AUDIO_END: return packMsg([VERSION, MsgType.AUDIO_END, msg.reason, ...opt(msg.slot)]);
    case MsgType.HOST_STATUS: return packMsg([VERSION, MsgType.HOST_STATUS, msg.slot, msg.state, msg.detail]);
    case MsgType.BUNDLE: return packMsg([VERSION, MsgType.BUNDLE, msg.messages]);
    case MsgType.BYE: return packMsg([VERSION, MsgType.BYE, msg.code, msg.reason]);
    case MsgType.TICK: return packMsg([VERSION, MsgType.TICK, msg.period_us, msg.next_in_us, msg.lead_us]);
    case MsgType.RECORDING: return packMsg([VERSION, MsgType.RECORDING, msg.on ? 1 : 0, msg.started_ms, msg.by]);
    default: throw new TypeError(`not a protocol message: ${JSON.stringify(msg)}`);
  }
}

export const join = (token) => encodeMessage({ type: MsgType.JOIN, token });
export const pose = (data) => encodeMessage({ type: MsgType.POSE, data });
export const chat = (text) => encodeMessage({ type: MsgType.CHAT, text });
/** One Opus packet of this participant's microphone; `seq` wraps at 65536. */
export const audio = (seq, data) => encodeMessage({ type: MsgType.AUDIO, seq, data });
/** The microphone was turned off. */
export const audioEnd = () => encodeMessage({ type: MsgType.AUDIO_END, reason: AudioEnd.FINISHED });

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
  if (!fromServer && !CLIENT_TYPES.has(type)) {
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

  /** Whether an optional trailing field follows. */
  more() {
    return this.i < this.values.length;
  }

  done() {
    if (this.i !== this.values.length) {
      throw new ProtocolError("invalid_field", `${this.what}: ${this.values.length - this.i} unexpected extra fields`);
    }
  }
}

const slotIf = (f, server) => (server ? { slot: f.int("slot", 0, MAX_SLOT) } : {});

const PARSERS = {
  [MsgType.JOIN]: (f) => ({ token: f.str("token", MAX_TOKEN_CHARS) }),
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
        name: m.str("name", MAX_ID_CHARS), host: m.int("host", 0, 1) === 1,
        avatar: m.more() ? m.str("avatar", MAX_ID_CHARS) : "" };
      m.done();
      return member;
    });
    return { event, members };
  },
  [MsgType.TIER]: (f) => ({ tier: f.int("tier", 0, 15), fps: f.int("fps", 1, 120), bits: f.int("bits", 5, 8), count: f.int("count", 0, 1024) }),
  [MsgType.ERROR]: (f) => ({ code: f.str("code", 64), message: f.str("message", 1000, 0) }),
  [MsgType.WELCOME]: (f) => ({ slot: f.int("slot", 0, MAX_SLOT), room_id: f.str("room_id", MAX_ID_CHARS),
    resume: f.more() ? f.str("resume", MAX_TOKEN_CHARS) : "" }),
  [MsgType.AUDIO]: (f, server) => {
    const seq = f.int("seq", 0, SEQ_MAX);
    const data = f.bin("data");
    if (!data.length) throw new ProtocolError("invalid_field", "AUDIO: empty packet");
    return server ? { seq, data, slot: f.int("slot", 0, MAX_SLOT), t_ms: f.int("t_ms", 0, TS_MAX) } : { seq, data };
  },
  [MsgType.AUDIO_END]: (f, server) => ({ reason: f.int("reason", 0, 1), ...slotIf(f, server) }),
  [MsgType.HOST_STATUS]: (f) => {
    const slot = f.int("slot", 0, MAX_SLOT);
    const state = f.str("state", 16);
    if (!HOST_STATES.includes(state)) throw new ProtocolError("invalid_field", `HOST_STATUS: unknown state ${state}`);
    return { slot, state, detail: f.str("detail", MAX_STATUS_CHARS, 0) };
  },
  [MsgType.BUNDLE]: (f) => {
    const messages = f.list("messages", MAX_BUNDLE);
    if (!messages.length || !messages.every((m) => m instanceof Uint8Array && m.length)) {
      throw new ProtocolError("invalid_field", "BUNDLE: messages must be 1..64 encoded messages");
    }
    return { messages };
  },
  [MsgType.BYE]: (f) => ({ code: f.int("code", 1000, 4999), reason: f.str("reason", 200, 0) }),
  [MsgType.RECORDING]: (f) => ({ on: f.int("on", 0, 1) === 1, started_ms: f.int("started_ms", 0, TS_MAX),
    by: f.str("by", 64, 0) }),
  [MsgType.TICK]: (f) => ({ period_us: f.int("period_us", 1000, 1000000), next_in_us: f.int("next_in_us", 0, 1000000),
    lead_us: f.int("lead_us", 0, 1000000) }),
};

/** The messages in one data-channel message from the server: a BUNDLE's contents, or the message itself. */
export function unbundle(data) {
  const msg = decodeServer(data);
  return msg.type === MsgType.BUNDLE ? msg.messages.map((m) => decodeServer(m)) : [msg];
}
