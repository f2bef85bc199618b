// The microphone to the AI host: AudioWorklet (20 ms frames) -> WebCodecs AudioEncoder (Opus, 48 kHz mono)
// -> one AUDIO message per packet; AUDIO_END when the microphone is turned off. Nobody else hears it.
import { audioContext, codecSupports, SAMPLE_RATE } from "./sound.js";
import { t } from "./i18n.js";

export const OPUS_ENCODER = Object.freeze({
  codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: 1, bitrate: 24000, opus: { frameDuration: 20000 },
});
const WORKLET_URL = new URL("./mic-worklet.js", import.meta.url).href;
const MAX_QUEUE = 10;            // encoder backlog (20 ms frames) past which frames are dropped

let workletLoaded = null;        // the addModule promise, once per AudioContext

/** True when this browser can encode Opus through WebCodecs and run an AudioWorklet. */
export async function micSupported() {
  if (typeof AudioData !== "function" || !window.AudioWorkletNode) return false;
  return codecSupports(window.AudioEncoder, OPUS_ENCODER);
}

export class MicSender {
  /** `send(kind, payload)`: kind "audio" with an Opus packet (Uint8Array), or "end" when the mic stops. */
  constructor(send) {
    this.send = send;
    this.on = false;
    this.seq = 0;
    this.samples = 0;
    this.parts = null;          // {stream, source, node, encoder} while on
  }

  /** Opens the microphone (a clone of `track` if given) and starts sending; throws if it cannot. */
  async start(track = null) {
    if (this.on) return;
    const ctx = audioContext();
    if (ctx.state === "suspended") await ctx.resume().catch(() => {});
    const stream = track ? new MediaStream([track.clone()])
      : await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    try {
      workletLoaded ??= ctx.audioWorklet.addModule(WORKLET_URL);
      await workletLoaded;
      const encoder = new AudioEncoder({
        output: (chunk) => this.packet(chunk),
        error: (err) => console.warn("opus encoder:", err.message || err),
      });
      encoder.configure({ ...OPUS_ENCODER, sampleRate: ctx.sampleRate });
      const source = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, "mic-frames", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
      node.port.onmessage = (event) => this.frame(event.data, ctx.sampleRate);
      source.connect(node);
      node.connect(ctx.destination);       // silent output: keeps the node pulled by the graph
      this.parts = { stream, source, node, encoder };
      this.on = true;
    } catch (err) {
      for (const t of stream.getTracks()) t.stop();
      throw err;
    }
  }

  frame(samples, rate) {
    const encoder = this.parts?.encoder;
    if (!encoder || encoder.state !== "configured" || encoder.encodeQueueSize > MAX_QUEUE) return;
    const data = new AudioData({ format: "f32-planar", sampleRate: rate, numberOfFrames: samples.length,
      numberOfChannels: 1, timestamp: Math.round((this.samples / rate) * 1e6), data: samples });
    this.samples += samples.length;
    encoder.encode(data);
    data.close();
  }

  packet(chunk) {
    const bytes = new Uint8Array(chunk.byteLength);
    chunk.copyTo(bytes);
    if (this.send("audio", { seq: this.seq, data: bytes })) this.seq = (this.seq + 1) & 0xffff;
  }

  /** Stops the microphone; the packets still in the encoder go out before AUDIO_END. */
  async stop() {
    if (!this.on) return;
    this.on = false;
    const { stream, source, node, encoder } = this.parts;
    node.port.onmessage = null;
    source.disconnect();
    node.disconnect();
    for (const t of stream.getTracks()) t.stop();
    try {
      await encoder.flush();
    } catch { /* closed by an error: nothing left to send */ }
    if (encoder.state !== "closed") encoder.close();
    this.parts = null;
    this.samples = 0;
    this.send("end");
  }
}

/** Wires the microphone toggle: `send` as for MicSender, `track()` an open audio track to reuse (or null),
 * `opened(stream)` after the microphone opened. */
export function setupMicButton(button, note, state, { send, track, opened = () => {} }) {
  const mic = new MicSender(send);
  Object.assign(state, { micOn: false, micSupported: null, audioPacketsSent: 0 });
  const render = () => {
    button.textContent = t(state.micOn ? "mic_on" : "mic_off");
    button.title = t("mic_title");
    button.setAttribute("aria-pressed", String(state.micOn));
    button.classList.toggle("on", state.micOn);
  };
  const say = (text) => {
    note.textContent = text;
    note.hidden = !text;
  };
  micSupported().then((ok) => {
    state.micSupported = ok;
    button.disabled = !ok;
    if (!ok) say(t("mic_unsupported"));
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (mic.on) await mic.stop();
      else {
        await mic.start(track());
        opened(mic.parts.stream);
      }
      say("");
    } catch (err) {
      say(t("mic_failed", { message: err.message || String(err) }));
    } finally {
      state.micOn = mic.on;
      button.disabled = false;
      render();
    }
  });
  render();
  return mic;
}
