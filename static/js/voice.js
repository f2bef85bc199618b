// The AI host's voice: AUDIO packets (Opus) -> WebCodecs AudioDecoder -> AudioBuffers scheduled on the page's
// AudioContext by their place on the utterance timeline (t_ms), and the host's face held back to match.
//
// Timing. The first packet of an utterance is scheduled JITTER_S after it arrives (start = now + JITTER_S; a
// page that comes in mid-utterance starts from the packet it first hears); every later packet at
// start + t_ms / 1000, so gaps in delivery are absorbed by the buffer. A packet that
// would start in the past is played at once and `start` moves by the same amount, keeping the rest of the
// utterance contiguous. The server sends the host's POSE frames (and VISEMEs) in step with its audio, so a
// face frame belongs to the audio that arrived with it: it is applied when the newest audio packet received
// before it starts to play (a VISEME at start + its own t_ms). While the host is silent the delay is zero.
import { AudioEnd } from "./protocol.js";
import { audioContext, codecSupports, SAMPLE_RATE } from "./sound.js";

export const JITTER_S = 0.08;
const LATE_MARGIN_S = 0.02;      // "as soon as possible" still needs a moment to reach the audio thread
const OPUS_DECODER = Object.freeze({ codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: 1 });

/** True when this browser can decode Opus through WebCodecs. */
export function voiceSupported() {
  return codecSupports(window.AudioDecoder, OPUS_DECODER);
}

export class VoicePlayer {
  /** `stats` receives audioPacketsReceived, audioScheduledSeconds, audioPlaying, lastAudioEndReason. */
  constructor(stats) {
    this.stats = Object.assign(stats, { audioPacketsReceived: 0, audioScheduledSeconds: 0, audioPlaying: false,
      lastAudioEndReason: null, audioLostPackets: 0, audioShiftedMs: 0 });
    this.supported = typeof AudioDecoder === "function";
    this.decoder = null;
    this.pending = [];           // {u, tMs} of the packets inside the decoder, in order (their start follows u's)
    this.sources = new Set();
    this.utterance = null;       // {start, lastT, lastSeq} between the first packet and AUDIO_END
    this.lastWhen = -Infinity;   // when the newest packet plays (AudioContext seconds)
    this.faces = [];             // [{at, apply}] face updates waiting for their audio
  }

  /** A server AUDIO message {seq, data, t_ms}. */
  packet({ seq, data, t_ms: tMs }) {
    this.stats.audioPacketsReceived += 1;
    const ctx = audioContext();
    if (!this.supported || ctx.state !== "running" || !this.ensureDecoder()) return;   // cannot play: drop
    const now = ctx.currentTime;
    let u = this.utterance;
    if (!u || tMs < u.lastT) {        // the first packet heard (which may be mid-utterance) plays JITTER_S from now
      u = this.utterance = { start: now + JITTER_S - tMs / 1000, lastT: -1, lastSeq: null };
    }
    if (u.lastSeq !== null) this.stats.audioLostPackets += Math.max(0, ((seq - u.lastSeq) & 0xffff) - 1);
    u.lastT = tMs;
    u.lastSeq = seq;
    const late = now + LATE_MARGIN_S - (u.start + tMs / 1000);
    if (late > 0) this.shift(late);                   // arrived late: play it at once, the rest after it
    const when = u.start + tMs / 1000;
    this.lastWhen = when;
    this.pending.push({ u, tMs });
    this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: tMs * 1000, data }));
  }

  ensureDecoder() {
    if (this.decoder && this.decoder.state === "configured") return true;
    try {
      this.decoder = new AudioDecoder({ output: (audio) => this.decoded(audio), error: (err) => this.failed(err) });
      this.decoder.configure(OPUS_DECODER);
      this.pending = [];
      return true;
    } catch (err) {
      this.failed(err);
      this.supported = false;
      return false;
    }
  }

  failed(err) {
    console.warn("opus decoder:", err?.message || err);
    this.pending = [];
    this.decoder = null;        // the next packet makes a new one
  }

  decoded(audio) {
    const ctx = audioContext();
    const p = this.pending.shift();
    const planned = p ? p.u.start + p.tMs / 1000 : ctx.currentTime;   // a shift since it was queued counts
    try {
      const buffer = ctx.createBuffer(1, audio.numberOfFrames, audio.sampleRate);
      audio.copyTo(buffer.getChannelData(0), { planeIndex: 0, format: "f32-planar" });
      const late = ctx.currentTime + LATE_MARGIN_S - planned;
      if (late > 0) this.shift(late);                                  // decoding took too long: shift the rest
      this.play(buffer, planned + Math.max(late, 0));
    } finally {
      audio.close();
    }
  }

  /** Moves the rest of the utterance `seconds` later (its audio arrived, or was decoded, late). */
  shift(seconds) {
    if (this.utterance) this.utterance.start += seconds;
    this.stats.audioShiftedMs += seconds * 1000;
  }

  play(buffer, when) {
    const ctx = audioContext();
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.onended = () => {
      this.sources.delete(source);
      this.stats.audioPlaying = this.sources.size > 0;
    };
    source.start(when);
    this.sources.add(source);
    this.stats.audioScheduledSeconds += buffer.duration;
    this.stats.audioPlaying = true;
  }

  /** AUDIO_END: the utterance is over; on INTERRUPTED whatever is still scheduled is dropped at once. */
  end(reason) {
    this.stats.lastAudioEndReason = reason;
    this.utterance = null;
    if (reason !== AudioEnd.INTERRUPTED) return;
    for (const source of this.sources) {
      source.onended = null;
      try { source.stop(); } catch { /* never started */ }
      source.disconnect();
    }
    this.sources.clear();
    this.stats.audioPlaying = false;
    this.pending = [];
    if (this.decoder?.state === "configured") {
      this.decoder.reset();                // drops the packets still being decoded
      this.decoder.configure(OPUS_DECODER);
    }
    this.lastWhen = -Infinity;
    const faces = this.faces;
    this.faces = [];
    for (const f of faces) f.apply();     // the host's face catches up with the (silent) present
  }

  /** Applies a face update of the host when the audio that came with it plays (`tMs`: a VISEME's own time). */
  face(apply, tMs = null) {
    const u = this.utterance;
    const at = tMs !== null && u ? u.start + tMs / 1000 : this.lastWhen;
    if (!this.supported || at <= audioContext().currentTime) {
      apply();
      return;
    }
    let i = this.faces.length;                     // kept in order of `at`, ties in order of arrival
    while (i > 0 && this.faces[i - 1].at > at) i--;
    this.faces.splice(i, 0, { at, apply });
  }

  /** Called every animation frame: applies the face updates whose audio has started. */
  tick() {
    if (!this.faces.length) return;
    const now = audioContext().currentTime;
    let i = 0;
    while (i < this.faces.length && this.faces[i].at <= now) this.faces[i++].apply();
    if (i) this.faces.splice(0, i);
  }

  /** The latency the face is held back by right now, in milliseconds (0 when the host is silent). */
  faceDelayMs() {
    return Math.max(0, (this.lastWhen - audioContext().currentTime) * 1000);
  }
}
