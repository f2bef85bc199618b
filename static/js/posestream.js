// Key and delta frames over time: PoseSender picks key or delta for each outgoing frame, PoseReceiver
// rebuilds each participant's face from key frames (by key id) and the deltas that refer to them.
import { decodePose, dequantize, encodeDelta, encodeKey, keySize, quantize } from "./protocol.js";

const KEY_INTERVAL_MS = 1000;   // a key frame at least this often, even when a hidden tab's timers slow down

export class PoseSender {
  constructor(bits = 8, fps = 30) {
    this.bits = bits;
    this.fps = fps;
    this.keyId = -1;
    this.keyQ = null;
    this.seq = 0;
    this.sinceKey = 0;
    this.keyAt = -Infinity;
  }

  /** The tier changed: a new precision forces a key frame. */
  setTier(fps, bits) {
    if (bits !== this.bits) this.keyQ = null;
    this.bits = bits;
    this.fps = fps;
  }

  /** Pose values -> the next payload: a key frame every `fps` frames or every second, else a delta (or a
   *  key frame when the delta would be as large: most fields moved). */
  next(values, nowMs = performance.now()) {
    const q = quantize(values, this.bits);
    const seq = this.seq;
    this.seq = (this.seq + 1) & 0xff;
    if (this.keyQ !== null && this.sinceKey < this.fps - 1 && nowMs - this.keyAt < KEY_INTERVAL_MS) {
      const delta = encodeDelta(q, this.keyQ, this.bits, this.keyId, seq);
      if (delta.length < keySize(this.bits)) {
        this.sinceKey += 1;
        return delta;
      }
    }
    this.keyId = (this.keyId + 1) & 0x1f;
    this.keyQ = q;
    this.sinceKey = 0;
    this.keyAt = nowMs;
    return encodeKey(q, this.bits, this.keyId, seq);
  }
}

export class PoseReceiver {
  constructor() {
    this.keys = new Map(); // slot -> Map(keyId -> {q, bits})
  }

  /** A payload from `slot` -> its dequantized pose, or null for a delta whose key frame is unknown. */
  receive(slot, data) {
    let keys = this.keys.get(slot);
    if (!keys) {
      keys = new Map();
      this.keys.set(slot, keys);
    }
    const keyId = data[0] & 0x1f;
    const isKey = Boolean(data[0] & 0x80);
    const key = keys.get(keyId);
    if (!isKey && !key) return null;
    const { head, q } = decodePose(data, isKey ? null : key.q);
    if (isKey) keys.set(keyId, { q, bits: head.bits });
    else if (head.bits !== key.bits) return null;
    return dequantize(q, head.bits);
  }

  forget(slot) {
    this.keys.delete(slot);
  }
}
