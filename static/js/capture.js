// The local face: camera frames through MediaPipe's FaceLandmarker (served from /static/vendor), or, without
// a camera, an idle animation whose mouth follows the microphone; a pose set by script overrides both.
import { neutralPose } from "./protocol.js";
import { landmarksToPose, PoseFilter } from "./pose.js";
import { audioContext } from "./sound.js";

const VENDOR = new URL("../vendor/", import.meta.url);
const MEDIA_TIMEOUT_MS = 8000;   // a permission prompt nobody answers must not hold the page
const FACE_STALE_MS = 1000;      // after this long without a face, the idle pose takes over

export class Capture {
  constructor() {
    this.status = "loading";     // loading | camera | no_face | mic | idle | manual
    this.manual = null;
    this.landmarker = null;
    this.video = null;
    this.analyser = null;
    this.audioTrack = null;
    this.lastVideoTime = -1;
    this.face = null;
    this.faceAt = -Infinity;
    this.filter = new PoseFilter();
    this.idle = new IdleFace();
    this.info = { landmarks: 0, faceFrames: 0, detectMs: 0, error: "" };
  }

  /** Opens camera and microphone if there are any; never throws. */
  async start(video) {
    const stream = (await getMedia({ video: { width: 640, height: 480 }, audio: true }))
      ?? (await getMedia({ video: { width: 640, height: 480 } }))
      ?? (await getMedia({ audio: true }));
    if (stream?.getAudioTracks().length) this.listen(stream);
    if (stream?.getVideoTracks().length) {
      video.muted = true;
      video.srcObject = new MediaStream(stream.getVideoTracks());
      video.hidden = false;
      await video.play().catch(() => {});
      this.video = video;
      try {
        this.landmarker = await createLandmarker();
      } catch (err) {
        this.info.error = `face landmarker: ${err.message || err}`;
        console.error(this.info.error);
      }
    }
    this.status = this.landmarker ? "no_face" : this.analyser ? "mic" : "idle";
  }

  /** Follows the level of `stream`'s microphone (on the page's shared AudioContext, resumed by a gesture). */
  listen(stream) {
    try {
      const ctx = audioContext();
      const source = ctx.createMediaStreamSource(stream);
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 1024;
      source.connect(this.analyser);
      this.samples = new Float32Array(this.analyser.fftSize);
      this.audioTrack = stream.getAudioTracks()[0] ?? null;
    } catch (err) {
      console.warn("microphone level unavailable:", err);
      this.analyser = null;
    }
  }

  /** The open microphone track, if capture has one (the mic toggle sends a clone of it). */
  liveAudioTrack() {
    return this.audioTrack?.readyState === "live" ? this.audioTrack : null;
  }

  /** Overrides capture with fixed fields (others neutral); null returns to capture. */
  setManual(pose) {
    this.manual = pose ? { ...neutralPose(), ...pose } : null;
  }

  micLevel() {
    if (!this.analyser) return 0;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const v of this.samples) sum += v * v;
    return Math.sqrt(sum / this.samples.length);
  }

  /** The pose to send now (`nowMs` from performance.now()). */
  sample(nowMs) {
    if (this.manual) {
      this.status = "manual";
      return { ...this.manual };
    }
    this.detect(nowMs);
    if (this.face && nowMs - this.faceAt < FACE_STALE_MS) {
      this.status = "camera";
      return { ...this.face };
    }
    this.status = this.landmarker ? "no_face" : this.analyser ? "mic" : "idle";
    return this.idle.pose(nowMs, this.micLevel());
  }

  detect(nowMs) {
    const v = this.video;
    if (!this.landmarker || !v || v.readyState < 2 || v.currentTime === this.lastVideoTime) return;
    this.lastVideoTime = v.currentTime;
    const t0 = performance.now();
    const result = this.landmarker.detectForVideo(v, nowMs);
    this.info.detectMs = performance.now() - t0;
    const landmarks = result.faceLandmarks?.[0];
    this.info.landmarks = landmarks ? landmarks.length : 0;
    const pose = landmarks && landmarksToPose(landmarks, v.videoWidth, v.videoHeight);
    if (pose) {
      this.face = this.filter.push(pose, nowMs);
      this.faceAt = nowMs;
      this.info.faceFrames += 1;
    }
  }
}

async function getMedia(constraints) {
  if (!navigator.mediaDevices?.getUserMedia) return null;
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), MEDIA_TIMEOUT_MS); });
  try {
    return await Promise.race([navigator.mediaDevices.getUserMedia(constraints), timeout]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function createLandmarker() {
  const { FilesetResolver, FaceLandmarker } = await import(new URL("vision_bundle.mjs", VENDOR).href);
  const fileset = await FilesetResolver.forVisionTasks(new URL("wasm", VENDOR).href);
  return FaceLandmarker.createFromOptions(fileset, {
    baseOptions: { modelAssetPath: new URL("face_landmarker.task", VENDOR).href, delegate: "CPU" },
    runningMode: "VIDEO",
    numFaces: 1,
    outputFaceBlendshapes: false,
  });
}

/** A face at rest: it blinks, drifts a little and opens its mouth with the microphone level. */
export class IdleFace {
  constructor() {
    this.nextBlink = 1500;
    this.mouth = 0;
  }

  pose(tMs, level = 0) {
    if (tMs > this.nextBlink + 160) this.nextBlink = tMs + 2200 + Math.random() * 3000;
    const blinking = tMs >= this.nextBlink && tMs <= this.nextBlink + 160;
    const t = tMs / 1000;
    const target = Math.min(1, Math.max(0, (level - 0.01) * 10));
    this.mouth += (target - this.mouth) * (target > this.mouth ? 0.6 : 0.25);
    return {
      ...neutralPose(),
      yaw: 0.12 * Math.sin(t * 0.5) + 0.04 * Math.sin(t * 1.3),
      pitch: 0.05 * Math.sin(t * 0.37),
      roll: 0.05 * Math.sin(t * 0.29 + 1),
      gaze_x: 0.25 * Math.sin(t * 0.23),
      eye_l: blinking ? 0 : 1,
      eye_r: blinking ? 0 : 1,
      brow_l: 0.1 * Math.sin(t * 0.41),
      brow_r: 0.1 * Math.sin(t * 0.41),
      mouth_open: this.mouth,
      mouth_wide: 0.5,
      jaw_open: this.mouth * 0.5,
      smile: 0.2,
    };
  }
}
