// MediaPipe's 478 face landmarks -> the 17 PoseData fields.
// Everything is measured in the camera image as the camera sees it, which is how the other participants
// look at the avatar: "_l" / "_r" are the eye and brow on the viewer's left / right, x and yaw grow to the
// viewer's right, y, pitch and gaze_y grow upwards (see docs/PROTOCOL.md).

const LM = {
  eyeL: {                                   // the eye on the image's left
    outer: 33, inner: 133, top: 159, bottom: 145, iris: 468,
    contour: [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173],
  },
  eyeR: {
    outer: 263, inner: 362, top: 386, bottom: 374, iris: 473,
    contour: [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398],
  },
  browL: [70, 63, 105, 66, 107],
  browR: [300, 293, 334, 296, 336],
  nose: 1, forehead: 10, chin: 152, cheekL: 234, cheekR: 454,
  lipTop: 13, lipBottom: 14, mouthL: 61, mouthR: 291,
};

// Calibration: the neutral values were measured on a frontal photo (skimage's astronaut) and the
// spans chosen so a deliberate expression reaches the end of the range.
const CAL = {
  yawGain: 1.0,
  pitchBias: -0.15, pitchGain: 1.0,           // the chin sits a little behind the forehead
  faceWidthRef: 0.3,                          // cheek-to-cheek distance / shorter image side, at z = 0
  eyeClosed: 0.12, eyeOpen: 0.32,             // lid gap / eye width
  gazeXGain: 5, gazeYGain: 8,                 // iris offset from the eye's centre / eye width
  gazeYRest: 0.024,                           // looking ahead, the iris sits this far above the contour's centre
  browNeutral: 0.075, browSpan: 0.03,         // brow-to-lid distance / face height
  mouthClosedGap: 0.01, mouthOpenSpan: 0.12,  // inner-lip gap / face height
  mouthWideNeutral: 0.4, mouthWideSpan: 0.2,  // corner distance / face width; neutral maps to 0.5
  smileSpan: 0.06,                            // corner lift over lip centre / face height
  jawNeutral: 0.4, jawSpan: 0.15,             // nose-to-chin / face height
};

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const clamp01 = (v) => clamp(v, 0, 1);
const clamp11 = (v) => clamp(v, -1, 1);
const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

/**
 * Landmarks ({x, y, z} normalised to the image) of an image `width` x `height` -> pose fields.
 * Returns null when there are too few landmarks (the iris points need the 478-point model).
 */
export function landmarksToPose(landmarks, width, height) {
  if (!landmarks || landmarks.length < 478) return null;
  const side = Math.min(width, height);
  // Pixels, scaled so the shorter image side is 1 (z uses the width's scale, as MediaPipe does).
  const P = (i) => {
    const l = landmarks[i];
    return [(l.x * width) / side, (l.y * height) / side, (l.z * width) / side];
  };
  const eyeOuterL = P(LM.eyeL.outer);
  const eyeOuterR = P(LM.eyeR.outer);
  const roll = Math.atan2(eyeOuterR[1] - eyeOuterL[1], eyeOuterR[0] - eyeOuterL[0]);

  const cheekL = P(LM.cheekL), cheekR = P(LM.cheekR), forehead = P(LM.forehead), chin = P(LM.chin);
  const across = [cheekR[0] - cheekL[0], cheekR[1] - cheekL[1], cheekR[2] - cheekL[2]];
  const down = [chin[0] - forehead[0], chin[1] - forehead[1], chin[2] - forehead[2]];
  const yaw = Math.atan2(across[2], Math.hypot(across[0], across[1])) * CAL.yawGain;
  const pitch = (-Math.atan2(down[2], Math.hypot(down[0], down[1])) - CAL.pitchBias) * CAL.pitchGain;

  // Face-aligned 2D coordinates: roll removed, origin at the face centre.
  const cx = (cheekL[0] + cheekR[0] + forehead[0] + chin[0]) / 4;
  const cy = (cheekL[1] + cheekR[1] + forehead[1] + chin[1]) / 4;
  const cos = Math.cos(-roll), sin = Math.sin(-roll);
  const F = (i) => {
    const p = P(i);
    const dx = p[0] - cx, dy = p[1] - cy;
    return [dx * cos - dy * sin, dx * sin + dy * cos];
  };
  const faceW = dist(F(LM.cheekL), F(LM.cheekR));
  const faceH = dist(F(LM.forehead), F(LM.chin));
  if (faceW <= 0 || faceH <= 0) return null;

  const eyeL = eyeMetrics(F, LM.eyeL);
  const eyeR = eyeMetrics(F, LM.eyeR);
  const brow = (ids, eye) => {
    const b = ids.map(F).reduce((s, p) => s + p[1], 0) / ids.length;
    return clamp11(((F(eye.top)[1] - b) / faceH - CAL.browNeutral) / CAL.browSpan);
  };

  const lipTop = F(LM.lipTop), lipBottom = F(LM.lipBottom);
  const cornerL = F(LM.mouthL), cornerR = F(LM.mouthR);
  const mouthOpen = clamp01((dist(lipTop, lipBottom) / faceH - CAL.mouthClosedGap) / CAL.mouthOpenSpan);
  const mouthWide = clamp01(0.5 + (dist(cornerL, cornerR) / faceW - CAL.mouthWideNeutral) / CAL.mouthWideSpan);
  const lipCentreY = (lipTop[1] + lipBottom[1]) / 2;
  const cornerY = (cornerL[1] + cornerR[1]) / 2;

  return {
    yaw, pitch, roll,
    x: clamp11((cx * side) / width * 2 - 1),
    y: clamp11(1 - (cy * side) / height * 2),
    z: clamp11(Math.log2(Math.hypot(across[0], across[1]) / CAL.faceWidthRef)),
    eye_l: eyeL.open, eye_r: eyeR.open,
    gaze_x: clamp11((eyeL.gx + eyeR.gx) / 2),
    gaze_y: clamp11((eyeL.gy + eyeR.gy) / 2),
    brow_l: brow(LM.browL, LM.eyeL),
    brow_r: brow(LM.browR, LM.eyeR),
    mouth_open: mouthOpen,
    mouth_wide: mouthWide,
    mouth_round: clamp01((0.5 - mouthWide) * 2.5) * clamp01(0.25 + mouthOpen * 3),
    smile: clamp11((lipCentreY - cornerY) / faceH / CAL.smileSpan),
    jaw_open: clamp01((dist(F(LM.nose), F(LM.chin)) / faceH - CAL.jawNeutral) / CAL.jawSpan),
  };
}

// Openness from the lid gap; gaze from the iris centre's offset from the centre of the eye's contour.
// (The landmark model is mediapipe's face mesh with attention, its irises refined: scripts/build_assets.py.)
function eyeMetrics(F, eye) {
  const width = dist(F(eye.outer), F(eye.inner));
  const open = clamp01((dist(F(eye.top), F(eye.bottom)) / width - CAL.eyeClosed) / (CAL.eyeOpen - CAL.eyeClosed));
  const points = eye.contour.map(F);
  const cx = points.reduce((s, p) => s + p[0], 0) / points.length;
  const cy = points.reduce((s, p) => s + p[1], 0) / points.length;
  const iris = F(eye.iris);
  return { open, gx: ((iris[0] - cx) / width) * CAL.gazeXGain, gy: ((cy - iris[1]) / width - CAL.gazeYRest) * CAL.gazeYGain };
}

/** Smooths a stream of poses (exponential, per field) to take the jitter out of the landmarks. */
export class PoseFilter {
  constructor(halfLifeMs = 40) {
    this.halfLifeMs = halfLifeMs;
    this.value = null;
    this.t = 0;
  }

  push(pose, tMs) {
    if (!this.value) {
      this.value = { ...pose };
    } else {
      const a = 1 - Math.pow(0.5, Math.max(0, tMs - this.t) / this.halfLifeMs);
      for (const k of Object.keys(pose)) this.value[k] += (pose[k] - this.value[k]) * a;
    }
    this.t = tMs;
    return { ...this.value };
  }
}
