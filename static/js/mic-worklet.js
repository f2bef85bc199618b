// AudioWorklet processor: the microphone as 20 ms frames (960 samples at 48 kHz, mono) posted to the page,
// which wraps each in an AudioData for the Opus encoder (mic.js).
const FRAME = 960;

class MicFrames extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(FRAME);
    this.n = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || !channels.length) return true;
    const count = channels.length;
    for (let i = 0; i < channels[0].length; i++) {
      let v = 0;
      for (let c = 0; c < count; c++) v += channels[c][i];
      this.frame[this.n++] = v / count;
      if (this.n === FRAME) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Float32Array(FRAME);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("mic-frames", MicFrames);
