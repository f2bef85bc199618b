// A photo avatar: a photo's texture on a triangle mesh that PoseData moves. The Rig is a port of
// avatars/rig.py (which defines the motion; tests/test_photo_page.py holds the two equal), the drawing follows
// avatars/render.py: the inner mouth (darkness, upper teeth) behind, the mesh over it with a depth test so a
// fold shows the nearer skin. Every tile draws on ONE shared WebGL canvas (a page gets about 16 WebGL
// contexts) and copies the result into its own 2D canvas, so the page keeps its one render loop.
import { AvatarView } from "./avatar.js";

const TEXTURE = 512;
const LANDMARKS = 478;
// The capture code's landmarks and calibration (avatars/rig.py and static/js/pose.js; keep them equal)
const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);
const EYE_L = { key: "eye_l", outer: 33, inner: 133, top: 159, bottom: 145, iris: 468, irises: range(468, 473),
  upper: [246, 161, 160, 159, 158, 157, 173], lower: [7, 163, 144, 145, 153, 154, 155] };
const EYE_R = { key: "eye_r", outer: 263, inner: 362, top: 386, bottom: 374, iris: 473, irises: range(473, 478),
  upper: [466, 388, 387, 386, 385, 384, 398], lower: [249, 390, 373, 374, 380, 381, 382] };
const BROW_L = [70, 63, 105, 66, 107], BROW_R = [300, 293, 334, 296, 336];
const EYE_CONTOURS = [[EYE_L.outer, ...EYE_L.lower, EYE_L.inner, ...EYE_L.upper],
  [EYE_R.outer, ...EYE_R.lower, EYE_R.inner, ...EYE_R.upper]];
const NOSE = 1, FOREHEAD = 10, CHIN = 152, CHEEK_L = 234, CHEEK_R = 454;
const LIP_TOP = 13, LIP_BOTTOM = 14, MOUTH_L = 61, MOUTH_R = 291;
const CAL = { eye_closed: 0.12, eye_open: 0.32, gaze_x: 5.0, gaze_y: 8.0, gaze_y_rest: 0.024, brow_neutral: 0.075, brow_span: 0.03,
  mouth_closed: 0.01, mouth_span: 0.12, wide_neutral: 0.4, wide_span: 0.2, smile_span: 0.06,
  jaw_neutral: 0.4, jaw_span: 0.15, pitch_bias: -0.15 };
const BROW_AREA_L = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 156];
const BROW_AREA_R = [300, 293, 334, 296, 336, 276, 283, 282, 295, 285, 383];
const LOWER_INNER_LIP = [95, 88, 178, 87, 14, 317, 402, 318, 324];
const UPPER_INNER_LIP = [191, 80, 81, 82, 13, 312, 311, 310, 415];
const LOWER_OUTER_LIP = [146, 91, 181, 84, 17, 314, 405, 321, 375];
// avatars/render.py's inner mouth
const MOUTH_RING = [78, ...UPPER_INNER_LIP, 308, ...[...LOWER_INNER_LIP].reverse()];
const INSIDE = [40, 18, 24], TEETH = [226, 220, 206];
const TEETH_PROFILE = [0.3, 0.65, 0.9, 1.0, 1.0, 1.0, 0.9, 0.65, 0.3];   // the teeth's height along the upper lip

const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
// How far past the capture's range the rig may be asked to go (avatars/rig.py REACH)
const REACH = { eye: [-0.5, 1.5], mouth_open: [-0.3, 1.3], smile: [-1.5, 1.5] };
/** np.interp: `v` on the polyline (xs, ys), xs increasing, flat beyond its ends. */
function interp(v, xs, ys) {
  if (v <= xs[0]) return ys[0];
  for (let i = 1; i < xs.length; i++) {
    if (v <= xs[i]) return ys[i - 1] + ((v - xs[i - 1]) / (xs[i] - xs[i - 1])) * (ys[i] - ys[i - 1]);
  }
  return ys[ys.length - 1];
}
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const dist = (p, i, j) => Math.hypot(p[3 * i] - p[3 * j], p[3 * i + 1] - p[3 * j + 1]);
const smoothstep = (d) => { const c = clip(1 - d, 0, 1); return c * c * (3 - 2 * c); };

/** A photo avatar's mesh (FaceMesh.as_json()) and what its photo's face measures at rest. */
export class Rig {
  constructor(mesh) {
    if (mesh.version !== 1 || mesh.texture !== TEXTURE) throw new Error("an avatar mesh of another version");
    this.count = mesh.points.length;
    this.calibration = new Calibration(mesh.calibration);
    this.rest = Float64Array.from(mesh.points.flat());
    this.triangles = Uint16Array.from(openHoles(mesh.triangles).flat());
    this.work = new Float64Array(this.rest.length);
    const p = this.rest, x = (i) => p[3 * i], y = (i) => p[3 * i + 1];
    this.centre = [0, 1, 2].map((k) => (p[3 * CHEEK_L + k] + p[3 * CHEEK_R + k] + p[3 * FOREHEAD + k] + p[3 * CHIN + k]) / 4);
    this.faceW = dist(p, CHEEK_R, CHEEK_L);
    this.faceH = dist(p, CHIN, FOREHEAD);
    this.size = Math.max(...mesh.points.map(([px, py]) => Math.max(px, py)));
    // What the photo's face measures; its place and size in the texture are the avatar's x = y = z = 0.
    this.restPose = { ...measure(p, false), x: 0, y: 0, z: 0 };
    // How much each face point goes with the jaw (rig.py: the lower lip and chin fully, fading to nothing at
    // the mouth corners' height and towards the jaw's angles); the chin alone for a jaw lower than the lips.
    const mouthY = (y(MOUTH_L) + y(MOUTH_R)) / 2;
    this.jaw = new Float64Array(LANDMARKS);
    for (let i = 0; i < LANDMARKS; i++) {
      const below = clip((y(i) - mouthY) / Math.max(y(CHIN) - mouthY, 1), 0, 1);
      const across = clip(1 - Math.abs(x(i) - this.centre[0]) / (0.55 * this.faceW), 0, 1);
      this.jaw[i] = Math.sqrt(below) * across ** 0.7;
    }
    // The lower lip moves as one piece, column by column (rig.py): by each column's share of the gap in the
    // middle, or, for closed lips in the photo, fully in the middle and less towards the corners.
    const middle = LOWER_INNER_LIP.indexOf(LIP_BOTTOM);
    const gaps = LOWER_INNER_LIP.map((i, k) => Math.max(y(i) - y(UPPER_INNER_LIP[k]), 0));
    const mid = (x(MOUTH_L) + x(MOUTH_R)) / 2, half = Math.max(Math.abs(x(MOUTH_R) - x(MOUTH_L)) / 2, 1);
    const taper = LOWER_INNER_LIP.map((i) => Math.sqrt(clip(1 - Math.abs(x(i) - mid) / half, 0, 1)));
    const parted = Math.min(gaps[middle] / (0.03 * this.faceH), 1);
    LOWER_INNER_LIP.forEach((i, k) => {
      const share = clip(gaps[k] / Math.max(gaps[middle], 1e-3), 0, 1);
      const column = k === middle ? 1
        : Math.min(parted * share + (1 - parted) * taper[k] / Math.max(taper[middle], 1e-3), 1);
      this.jaw[i] = this.jaw[LOWER_OUTER_LIP[k]] = column;
    });
    for (const i of UPPER_INNER_LIP) this.jaw[i] = 0;
    this.chin = Float64Array.from(this.jaw);
    for (const i of [...LOWER_INNER_LIP, ...LOWER_OUTER_LIP]) this.chin[i] *= 0.3;
    const falloff = (ids, radius) => {
      const ax = mean(ids.map(x)), ay = mean(ids.map(y));
      return Float64Array.from(range(0, LANDMARKS), (i) => smoothstep(Math.hypot(x(i) - ax, y(i) - ay) / radius));
    };
    this.corner = { l: falloff([MOUTH_L], 0.22 * this.faceW), r: falloff([MOUTH_R], 0.22 * this.faceW) };
    this.brow = { l: falloff(BROW_AREA_L, 0.16 * this.faceW), r: falloff(BROW_AREA_R, 0.16 * this.faceW) };
    // The skin of each upper lid (rig.py): the points above the lid's edge, fully at the edge, nothing 0.8 of the
    // eye's width above it, between the eye's corners; a closing eye brings it down with the edge below it.
    this.lid = {};
    for (const eye of [EYE_L, EYE_R]) {
      const width = dist(p, eye.outer, eye.inner), edge = [eye.outer, ...eye.upper, eye.inner];
      const order = [...edge].sort((a, b) => x(a) - x(b));
      const xs = order.map(x), ys = order.map(y), lo = Math.min(...xs), hi = Math.max(...xs);
      const own = new Set([...eye.upper, ...eye.lower, ...eye.irises]);
      this.lid[eye.key] = Float64Array.from(range(0, LANDMARKS), (i) => {
        const edgeY = interp(x(i), xs, ys);
        if (own.has(i) || y(i) >= edgeY || x(i) <= lo || x(i) >= hi) return 0;
        return clip(1 - (edgeY - y(i)) / (0.8 * width), 0, 1);
      });
    }
    // Each eyeball's part of the texture (render.py): the eye and some of the lids round it, as a rectangle
    this.eyeRegions = EYE_CONTOURS.map((contour) => {
      const cx = mean(contour.map(x)), cy = mean(contour.map(y));
      const xs = contour.map((i) => cx + (x(i) - cx) * 1.6), ys = contour.map((i) => cy + (y(i) - cy) * 1.6);
      return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    });
    // The fixed points of the triangles a pose moves (those with a face point)
    this.nearBox = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [t, i] of this.triangles.entries()) {
      const first = t - (t % 3), tri = this.triangles.subarray(first, first + 3);
      if (i >= LANDMARKS && tri.some((j) => j < LANDMARKS)) grow(this.nearBox, x(i), y(i));
    }
  }

  /** The box [x0, y0, x1, y1] outside which the mesh at `points` (deform3's) is as at every pose. */
  movingBox(points) {
    const box = [...this.nearBox];
    for (let i = 0; i < LANDMARKS; i++) grow(box, points[3 * i], points[3 * i + 1]);
    return box;
  }

  /** The mesh's points (N * 3: x, y, z, z larger farther) for `pose` (PoseData; missing fields: the photo's own). */
  deform3(pose, out = new Float32Array(this.rest.length)) {
    const want = this._wanted(pose);
    const p = this.work;
    p.set(this.rest);
    for (const [side, brow, eye] of [["l", BROW_L, EYE_L], ["r", BROW_R, EYE_R]]) {   // brows first: over the open lid
      const now = (p[3 * eye.top + 1] - mean(brow.map((i) => p[3 * i + 1]))) / this.faceH;
      const target = CAL.brow_neutral + want[`brow_${side}`] * CAL.brow_span;
      moveY(p, -(target - now) * this.faceH, this.brow[side]);
    }
    for (const eye of [EYE_L, EYE_R]) this._eye(p, eye, want[eye.key], want.gaze_x, want.gaze_y);
    this._mouth(p, want);
    this._head(p, want);
    this._asSeen(p, want);
    out.set(p);
    return out;
  }

  /** rig.py's eyeballs: per eye, the affine map [a, b, c, d, e, f] (x' = a x + b y + c, y' = d x + e y + f)
   *  from the texture to the frame of its eyeball, which turns with the head and is not squeezed by the lids. */
  eyeballs(pose) {
    const want = this._wanted(pose), head = this.work;
    head.set(this.rest);
    this._head(head, want);
    return [EYE_L, EYE_R].map((eye) => {
      const anchors = [eye.outer, eye.inner, eye.top];
      const m = affine3(anchors.map((i) => [this.rest[3 * i], this.rest[3 * i + 1]]),
        anchors.map((i) => [head[3 * i], head[3 * i + 1]]));
      if (want[eye.key] >= 0.2) {
        const width = Math.hypot(head[3 * eye.outer] - head[3 * eye.inner], head[3 * eye.outer + 1] - head[3 * eye.inner + 1]);
        const contour = [...eye.upper, ...eye.lower];
        const ox = this.rest[3 * eye.iris] - mean(contour.map((i) => this.rest[3 * i]));
        const oy = this.rest[3 * eye.iris + 1] - mean(contour.map((i) => this.rest[3 * i + 1]));
        m[2] += (want.gaze_x / CAL.gaze_x) * width - (m[0] * ox + m[1] * oy);
        m[5] += -(want.gaze_y / CAL.gaze_y + CAL.gaze_y_rest) * width - (m[3] * ox + m[4] * oy);
      }
      return m;
    });
  }

  /** Every field's value for `pose`: the photo's own where the pose has none, the calibrated input where a
   *  calibrated field is given (what reads back as the value wanted). */
  _wanted(pose) {
    const want = { ...this.restPose };
    for (const [k, v] of Object.entries(pose)) if (v !== null && v !== undefined) want[k] = v;
    for (const k of Object.keys(this.calibration.fields)) {
      if (pose[k] !== null && pose[k] !== undefined) want[k] = this.calibration.inputFor(k, want[k], want.yaw, want.pitch);
    }
    return want;
  }

  _eye(p, eye, openness, gazeX, gazeY) {
    const width = dist(p, eye.outer, eye.inner);
    const bottom = p[3 * eye.bottom + 1];
    const gap = bottom - p[3 * eye.top + 1];
    const target = (CAL.eye_closed + clip(openness, ...REACH.eye) * (CAL.eye_open - CAL.eye_closed)) * width;
    // Upper lid (and the iris with it) towards the lower lid; a closed eye is the lid's skin over it.
    const k = Math.max(target, 0.02 * width) / Math.max(gap, 1e-3);
    const edge = [eye.outer, ...eye.upper, eye.inner].map((i, n, all) =>
      [p[3 * i], n === 0 || n === all.length - 1 ? 0 : (bottom - p[3 * i + 1]) * (1 - k)]).sort((a, b) => a[0] - b[0]);
    const xs = edge.map(([ex]) => ex), drops = edge.map(([, d]) => d), lid = this.lid[eye.key];
    for (const i of [...eye.upper, ...eye.irises]) p[3 * i + 1] = bottom + (p[3 * i + 1] - bottom) * k;
    // the lid's skin above comes down with the edge below it (a lid, not a fold)
    for (let i = 0; i < LANDMARKS; i++) if (lid[i] > 0) p[3 * i + 1] += interp(p[3 * i], xs, drops) * lid[i];
    const contour = [...eye.upper, ...eye.lower];
    const cx = mean(contour.map((i) => p[3 * i])), cy = mean(contour.map((i) => p[3 * i + 1]));
    const on = openness < 0.2 ? 0 : 1;
    const sx = (gazeX / CAL.gaze_x * width - (p[3 * eye.iris] - cx)) * on;
    const sy = (-(gazeY / CAL.gaze_y + CAL.gaze_y_rest) * width - (p[3 * eye.iris + 1] - cy)) * on;
    for (const i of eye.irises) { p[3 * i] += sx; p[3 * i + 1] += sy; }
  }

  _mouth(p, want) {
    const h = this.faceH, y = (i) => p[3 * i + 1];
    const target = (CAL.mouth_closed + clip(want.mouth_open, ...REACH.mouth_open) * CAL.mouth_span) * h;
    moveY(p, target - dist(p, LIP_BOTTOM, LIP_TOP), this.jaw);
    const jawTarget = CAL.jaw_neutral + clip(want.jaw_open, 0, 1) * CAL.jaw_span;
    const extra = (jawTarget - (y(CHIN) - y(NOSE)) / h) * h;
    if (extra > 0) moveY(p, extra, this.chin);         // the jaw lower than the lips alone make it
    const widthTarget = CAL.wide_neutral + (clip(want.mouth_wide, 0, 1) - 0.5) * CAL.wide_span;
    const spread = (widthTarget - dist(p, MOUTH_R, MOUTH_L) / this.faceW) * this.faceW / 2;
    const { l, r } = this.corner;
    for (let i = 0; i < LANDMARKS; i++) { p[3 * i] -= spread * l[i]; p[3 * i] += spread * r[i]; }
    const liftNow = ((y(LIP_TOP) + y(LIP_BOTTOM)) / 2 - (y(MOUTH_L) + y(MOUTH_R)) / 2) / h;
    const lift = (clip(want.smile, ...REACH.smile) * CAL.smile_span - liftNow) * h;
    for (let i = 0; i < LANDMARKS; i++) p[3 * i + 1] -= lift * (l[i] + r[i]);
  }

  /** Turns the face points in 3D about the face's centre (orthographic), then moves and scales them. */
  _head(p, want) {
    const rest = this.restPose, [c0, c1, c2] = this.centre;
    const ry = want.yaw - rest.yaw, rx = want.pitch - rest.pitch, rr = want.roll - rest.roll;
    const cy = Math.cos(ry), sy = Math.sin(ry), cx = Math.cos(rx), sx = Math.sin(rx);
    const cr = Math.cos(rr), sr = Math.sin(rr);
    const scale = 2 ** want.z;                                   // x, y, z: 0 is the photo as it is
    const dx = want.x * this.size / 2, dy = -want.y * this.size / 2;
    for (let i = 0; i < LANDMARKS; i++) {
      let x = p[3 * i] - c0, y = p[3 * i + 1] - c1, z = p[3 * i + 2] - c2;
      [x, z] = [x * cy - z * sy, x * sy + z * cy];       // yaw: the viewer's right side goes back
      [y, z] = [y * cx + z * sx, z * cx - y * sx];       // pitch: the chin comes forward
      [x, y] = [x * cr - y * sr, x * sr + y * cr];
      p[3 * i] = c0 + x * scale + dx;
      p[3 * i + 1] = c1 + y * scale + dy;
      p[3 * i + 2] = c2 + z * scale;
    }
  }

  /** rig.py's _as_seen: the lids' and the lips' gaps set again as a camera sees the turned face. */
  _asSeen(p, want) {
    const dx = p[3 * CHIN] - p[3 * FOREHEAD], dy = p[3 * CHIN + 1] - p[3 * FOREHEAD + 1];
    const faceH = Math.hypot(dx, dy), ux = dx / Math.max(faceH, 1e-6), uy = dy / Math.max(faceH, 1e-6);
    for (const eye of [EYE_L, EYE_R]) {
      const width = dist(p, eye.outer, eye.inner);
      const ratio = CAL.eye_closed + clip(want[eye.key], ...REACH.eye) * (CAL.eye_open - CAL.eye_closed);
      const bx = p[3 * eye.bottom], by = p[3 * eye.bottom + 1];
      const gx = bx - p[3 * eye.top], gy = by - p[3 * eye.top + 1];
      const along = gx * ux + gy * uy, across = Math.hypot(gx - along * ux, gy - along * uy);
      const target = Math.max(ratio, 0.02) * width;
      if (along <= 1e-3 || target <= across) continue;
      const k = Math.min(Math.sqrt(target * target - across * across) / along, 2);
      for (const i of [...eye.upper, ...eye.irises]) {
        const s = (bx - p[3 * i]) * ux + (by - p[3 * i + 1]) * uy;
        p[3 * i] += s * (1 - k) * ux;
        p[3 * i + 1] += s * (1 - k) * uy;
      }
    }
    const gx = p[3 * LIP_BOTTOM] - p[3 * LIP_TOP], gy = p[3 * LIP_BOTTOM + 1] - p[3 * LIP_TOP + 1];
    const target = (CAL.mouth_closed + clip(want.mouth_open, ...REACH.mouth_open) * CAL.mouth_span) * faceH;
    const along = gx * ux + gy * uy, sx = gx - along * ux, sy = gy - along * uy, across = Math.hypot(sx, sy);
    const [newAlong, keep] = target > across ? [Math.sqrt(target * target - across * across), 1]
      : [Math.min(target, 0), Math.max(target, 0) / Math.max(across, 1e-6)];
    const mx = (newAlong - along) * ux + (keep - 1) * sx, my = (newAlong - along) * uy + (keep - 1) * sy;
    for (let i = 0; i < LANDMARKS; i++) {
      p[3 * i] += mx * this.jaw[i];
      p[3 * i + 1] += my * this.jaw[i];
    }
  }
}

/** The three points' affine map [a, b, c, d, e, f] from `src` to `dst` ([[x, y] x 3]). */
function affine3(src, dst) {
  const [[x0, y0], [x1, y1], [x2, y2]] = src;
  const det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0) || 1e-9;
  const row = (k) => {
    const [v0, v1, v2] = dst.map((d) => d[k]);
    const a = ((v1 - v0) * (y2 - y0) - (v2 - v0) * (y1 - y0)) / det;
    const b = ((x1 - x0) * (v2 - v0) - (x2 - x0) * (v1 - v0)) / det;
    return [a, b, v0 - a * x0 - b * y0];
  };
  return [...row(0), ...row(1)];
}

/** face.py's open_holes: the triangles without those inside the inner lips or an eye's contour (their openings
 *  show the layer behind: the inner mouth, the eyeballs), also for meshes made before the eyes were opened. */
function openHoles(triangles) {
  const holes = [new Set(MOUTH_RING), ...EYE_CONTOURS.map((c, k) => new Set([...c, ...range(468 + 5 * k, 473 + 5 * k)]))];
  return triangles.filter((tri) => !holes.some((hole) => tri.every((i) => hole.has(i))));
}

/** rig.py's Calibration: per head turn (a grid over yaw and pitch), the inputs and what a landmarker read. */
class Calibration {
  constructor(data) {
    let d = data || {};
    if (!d.fields) {
      d = { yaw: [0], pitch: [0], fields: Object.fromEntries(Object.entries(d).map(([k, [inputs, read]]) =>
        [k, { inputs, read: [[read]] }])) };
    }
    this.yaw = d.yaw;
    this.pitch = d.pitch;
    this.fields = d.fields;
  }

  inputFor(key, value, yaw, pitch) {
    const { inputs, read } = this.fields[key];
    let out = 0;
    for (const [i, wi] of cell(this.yaw, yaw)) {
      for (const [j, wj] of cell(this.pitch, pitch)) {
        if (wi * wj > 0) out += wi * wj * interp(value, read[i][j], inputs);
      }
    }
    return out;
  }
}

/** The grid's two entries around `v` with their linear weights (one at or beyond an edge). */
function cell(grid, v) {
  if (grid.length === 1 || v <= grid[0]) return [[0, 1]];
  if (v >= grid[grid.length - 1]) return [[grid.length - 1, 1]];
  let k = 0;
  while (grid[k + 1] < v) k += 1;
  const t = (v - grid[k]) / (grid[k + 1] - grid[k]);
  return [[k, 1 - t], [k + 1, t]];
}

function grow(box, x, y) {
  box[0] = Math.min(box[0], x);
  box[1] = Math.min(box[1], y);
  box[2] = Math.max(box[2], x);
  box[3] = Math.max(box[3], y);
}

function moveY(p, by, weight) {
  for (let i = 0; i < LANDMARKS; i++) p[3 * i + 1] += by * weight[i];
}

/** PoseData of a face's landmarks (texture pixels), as static/js/pose.js computes it (rig.py's measure). */
function measure(points, clipped = true) {
  const lim = clipped ? clip : (v) => v;     // off: past the capture's range (the photo's own, at rest)
  const P = (i, k) => points[3 * i + k] / TEXTURE;
  const roll = Math.atan2(P(EYE_R.outer, 1) - P(EYE_L.outer, 1), P(EYE_R.outer, 0) - P(EYE_L.outer, 0));
  const across = [0, 1, 2].map((k) => P(CHEEK_R, k) - P(CHEEK_L, k));
  const down = [0, 1, 2].map((k) => P(CHIN, k) - P(FOREHEAD, k));
  const c = [0, 1].map((k) => (P(CHEEK_L, k) + P(CHEEK_R, k) + P(FOREHEAD, k) + P(CHIN, k)) / 4);
  const cos = Math.cos(-roll), sin = Math.sin(-roll);
  const F = (i) => {
    const dx = P(i, 0) - c[0], dy = P(i, 1) - c[1];
    return [dx * cos - dy * sin, dx * sin + dy * cos];
  };
  const d = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);
  const faceW = d(F(CHEEK_L), F(CHEEK_R)), faceH = d(F(FOREHEAD), F(CHIN));
  const eye = (e) => lim((d(F(e.top), F(e.bottom)) / d(F(e.outer), F(e.inner)) - CAL.eye_closed)
    / (CAL.eye_open - CAL.eye_closed), 0, 1);
  const brow = (ids, e) => lim(((F(e.top)[1] - mean(ids.map((i) => F(i)[1]))) / faceH - CAL.brow_neutral)
    / CAL.brow_span, -1, 1);
  const [lipTop, lipBottom, cornerL, cornerR] = [LIP_TOP, LIP_BOTTOM, MOUTH_L, MOUTH_R].map(F);
  const smile = ((lipTop[1] + lipBottom[1]) / 2 - (cornerL[1] + cornerR[1]) / 2) / faceH / CAL.smile_span;
  return {
    yaw: Math.atan2(across[2], Math.hypot(across[0], across[1])),
    pitch: -Math.atan2(down[2], Math.hypot(down[0], down[1])) - CAL.pitch_bias,
    roll, x: lim(c[0] * 2 - 1, -1, 1), y: lim(1 - c[1] * 2, -1, 1),
    z: lim(Math.log2(Math.hypot(across[0], across[1]) / 0.3), -1, 1),
    eye_l: eye(EYE_L), eye_r: eye(EYE_R), gaze_x: 0, gaze_y: 0, brow_l: brow(BROW_L, EYE_L), brow_r: brow(BROW_R, EYE_R),
    mouth_open: lim((d(lipTop, lipBottom) / faceH - CAL.mouth_closed) / CAL.mouth_span, 0, 1),
    mouth_wide: lim(0.5 + (d(cornerL, cornerR) / faceW - CAL.wide_neutral) / CAL.wide_span, 0, 1),
    mouth_round: 0, smile: lim(smile, -1, 1),
    jaw_open: lim((d(F(NOSE), F(CHIN)) / faceH - CAL.jaw_neutral) / CAL.jaw_span, 0, 1),
  };
}

// --- drawing ---------------------------------------------------------------------------------------------

// Positions are texture pixels (pixel centres on integers, as OpenCV), put in the viewport by u_origin + u_scale
// (the texture's square fills all of it but a PAD-pixel frame); depth z / 4096, nearer smaller.
const VERTEX = `
attribute vec3 a_pos; attribute vec2 a_uv; uniform vec2 u_origin; uniform vec2 u_scale; varying vec2 v_uv;
void main() {
  v_uv = a_uv;
  vec2 at = u_origin + (a_pos.xy + 0.5) * u_scale;
  gl_Position = vec4(at.x, -at.y, clamp(a_pos.z / 4096.0, -1.0, 1.0), 1.0);
}`;
// u_color.a = 1: a flat colour; 0: the texture, from the mipmap level at or above the size drawn (bias -0.5 with
// LINEAR_MIPMAP_NEAREST: never blurrier than one bilinear tap, and as cheap in software as no mipmaps).
const FRAGMENT = `
#ifdef GL_FRAGMENT_PRECISION_HIGH
precision highp float;
#else
precision mediump float;
#endif
uniform sampler2D u_tex; uniform vec4 u_color; varying vec2 v_uv;
void main() { gl_FragColor = vec4(mix(texture2D(u_tex, v_uv, -0.5).rgb, u_color.rgb, u_color.a), 1.0); }`;
// Each tile's part of the shared canvas has a frame this wide of the texture's edge drawn outward, so scaling
// the part into the tile never blends in the next tile's pixels.
const PAD = 2;
const SHRINK_AFTER = 120;

/** The WebGL canvas every photo avatar draws on; each avatar's texture and mesh are uploaded once.
 *  The draws of one task (a frame of the render loop) are batched: each tile gets its own part of the canvas,
 *  and after the task (a microtask) all are drawn, then copied to their tiles: one wait for the GPU a frame.
 *  A tile is drawn at the size it is shown, and once drawn whole, only the box a pose can change is redrawn. */
class SharedRenderer {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.queue = [];
    this.oversized = 0;                 // frames in a row the canvas was more than twice too large
    this.canvas.addEventListener("webglcontextlost", (event) => { event.preventDefault(); this.gl = null; });
    this.canvas.addEventListener("webglcontextrestored", () => this._init());
    this._init();
  }

  _init() {
    this.uploads = new WeakMap();       // photo -> its GPU resources
    this.drawn = new WeakMap();         // tile ctx -> what was last drawn there whole
    const gl = this.canvas.getContext("webgl", { alpha: false, antialias: false, depth: true, stencil: true });
    this.gl = gl && this._program(gl) ? gl : null;
    if (!this.gl) return;
    this.polygon = gl.createBuffer();   // the inner mouth's polygons, written per draw
    this.holes = gl.createBuffer();     // rectangles of the texture itself where the mesh may leave holes, per draw
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  }

  _program(gl) {
    const program = gl.createProgram();
    for (const [type, source] of [[gl.VERTEX_SHADER, VERTEX], [gl.FRAGMENT_SHADER, FRAGMENT]]) {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      console.warn(`photo avatars: WebGL program: ${gl.getProgramInfoLog(program)}`);
      return false;
    }
    gl.useProgram(program);
    this.pos = gl.getAttribLocation(program, "a_pos");
    this.uv = gl.getAttribLocation(program, "a_uv");
    for (const name of ["color", "origin", "scale"]) this[name] = gl.getUniformLocation(program, `u_${name}`);
    return true;
  }

  _upload(photo) {
    let up = this.uploads.get(photo);
    if (up) return up;
    const gl = this.gl, rig = photo.rig;
    const uvs = Float32Array.from({ length: rig.count * 2 }, (_, i) => (rig.rest[3 * (i >> 1) + (i & 1)] + 0.5) / TEXTURE);
    up = { texture: gl.createTexture(), uvs: gl.createBuffer(), points: gl.createBuffer(), indices: gl.createBuffer() };
    gl.bindTexture(gl.TEXTURE_2D, up.texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, photo.image);
    // Mipmaps: a tile is often drawn at half the texture's size or less (a 4-column meeting: about 220 px)
    for (const [key, value] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR_MIPMAP_NEAREST], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, key, value);
    gl.generateMipmap(gl.TEXTURE_2D);
    gl.bindBuffer(gl.ARRAY_BUFFER, up.uvs);
    gl.bufferData(gl.ARRAY_BUFFER, uvs, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, up.points);
    gl.bufferData(gl.ARRAY_BUFFER, rig.count * 3 * 4, gl.DYNAMIC_DRAW);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, up.indices);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, rig.triangles, gl.STATIC_DRAW);
    this.uploads.set(photo, up);
    return up;
  }

  /** Draws `photo` at `pose` into the 2D context `ctx` (its whole canvas) at the end of this task, for `owner`
   *  (the tile's view: a new one draws the tile whole); false without WebGL. */
  draw(photo, pose, ctx, owner) {
    if (!this.gl) return false;
    const tile = ctx.canvas;
    // At the size the tile is shown (device pixels), at most the canvas's own: more would not be seen.
    const shown = Math.round(tile.clientWidth * (window.devicePixelRatio || 1));
    const width = shown > 0 ? Math.min(shown, tile.width) : tile.width;
    const height = Math.round((width * tile.height) / tile.width);
    const points = photo.rig.deform3(pose), eyes = photo.rig.eyeballs(pose);
    const whole = { owner, photo, width, height, tileWidth: tile.width, tileHeight: tile.height };
    const last = this.drawn.get(ctx);
    let box = [0, 0, width, height];    // the part to draw, in the tile's part of the shared canvas
    if (last && Object.keys(whole).every((key) => last[key] === whole[key])) {
      const [x0, y0, x1, y1] = photo.rig.movingBox(points), kx = width / TEXTURE, ky = height / TEXTURE;
      box = [Math.max(Math.floor((x0 + 0.5) * kx) - 2, 0), Math.max(Math.floor((y0 + 0.5) * ky) - 2, 0),
        Math.min(Math.ceil((x1 + 0.5) * kx) + 2, width), Math.min(Math.ceil((y1 + 0.5) * ky) + 2, height)];
    }
    this.queue.push({ photo, points, eyes, ctx, width, height, box, whole, x: 0, y: 0 });
    if (this.queue.length === 1) queueMicrotask(() => this._flush());
    return true;
  }

  _flush() {
    const gl = this.gl, queue = this.queue;
    this.queue = [];
    if (!gl) return;                    // lost meanwhile: the tiles keep their last frame
    const columns = Math.ceil(Math.sqrt(queue.length));
    let x = 0, y = 0, row = 0, right = 0;
    for (const [i, item] of queue.entries()) {   // rows of `columns` tiles
      if (i % columns === 0) { x = 0; y += row; row = 0; }
      Object.assign(item, { x: x + PAD, y: y + PAD });
      x += item.width + 2 * PAD;
      row = Math.max(row, item.height + 2 * PAD);
      right = Math.max(right, x);
    }
    // Grown when too small; shrunk when more than twice too large for SHRINK_AFTER frames in a row (a copy reads
    // the whole canvas back, but a resize costs more, and how many tiles move changes from frame to frame).
    const { width: canvasWidth, height: canvasHeight } = this.canvas, bottom = y + row;
    const fits = canvasWidth >= right && canvasHeight >= bottom;
    this.oversized = fits && canvasWidth * canvasHeight > 2 * right * bottom ? this.oversized + 1 : 0;
    if (!fits) Object.assign(this.canvas, { width: Math.max(canvasWidth, right), height: Math.max(canvasHeight, bottom) });
    if (this.oversized > SHRINK_AFTER) Object.assign(this.canvas, { width: right, height: bottom });
    gl.enable(gl.SCISSOR_TEST);
    for (const item of queue) this._render(item);
    for (const { ctx, x: px, y: py, width, height, box: [x0, y0, x1, y1], whole } of queue) {
      const kx = ctx.canvas.width / width, ky = ctx.canvas.height / height;
      ctx.drawImage(this.canvas, px + x0, py + y0, x1 - x0, y1 - y0, x0 * kx, y0 * ky, (x1 - x0) * kx, (y1 - y0) * ky);
      this.drawn.set(ctx, whole);
    }
  }

  _render({ photo, points, eyes, x, y, width, height, box: [x0, y0, x1, y1] }) {
    const gl = this.gl, up = this._upload(photo), bottom = this.canvas.height - y - height;
    const [w, h] = [width + 2 * PAD, height + 2 * PAD];
    gl.viewport(x - PAD, bottom - PAD, w, h);
    // The box, and PAD pixels round it (the copy's filter reads one pixel beyond it)
    gl.scissor(x + x0 - PAD, this.canvas.height - y - y1 - PAD, x1 - x0 + 2 * PAD, y1 - y0 + 2 * PAD);
    gl.clear(gl.DEPTH_BUFFER_BIT | gl.STENCIL_BUFFER_BIT);     // the colour: every pixel gets drawn
    gl.uniform2f(this.origin, (2 * PAD) / w - 1, (2 * PAD) / h - 1);
    gl.uniform2f(this.scale, (2 * width) / (TEXTURE * w), (2 * height) / (TEXTURE * h));
    gl.bindTexture(gl.TEXTURE_2D, up.texture);
    this._innerMouth(points, eyes.map((m, k) => [m, photo.rig.eyeRegions[k]]));
    gl.enable(gl.DEPTH_TEST);
    gl.uniform4f(this.color, 0, 0, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, up.points);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, points);
    gl.vertexAttribPointer(this.pos, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, up.uvs);
    gl.enableVertexAttribArray(this.uv);
    gl.vertexAttribPointer(this.uv, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, up.indices);
    gl.drawElements(gl.TRIANGLES, photo.rig.triangles.length, gl.UNSIGNED_SHORT, 0);
    gl.disable(gl.DEPTH_TEST);
  }

  /** render.py's layer behind the face: the texture, the eyeballs, a dark mouth inside the inner lips, the upper
   *  teeth. The mesh's outer border is fixed, so it covers everything but the mouth's and the eyes' openings and
   *  the frame round the texture: the texture goes only there (stretched outward from its edge in the frame),
   *  each eyeball's part of it mapped where its eye is (`eyes`: [affine map, texture rectangle] per eye). */
  _innerMouth(points, eyes) {
    const gl = this.gl, at = (i) => [points[3 * i], points[3 * i + 1]];
    const ring = MOUTH_RING.map(at), xs = ring.map(([x]) => x), ys = ring.map(([, y]) => y);
    const [lo, hi, out] = [-0.5, TEXTURE - 0.5, TEXTURE / 8];
    const rects = [[lo - out, lo - out, hi + out, lo + 1], [lo - out, hi - 1, hi + out, hi + out],
      [lo - out, lo - out, lo + 1, hi + out], [hi - 1, lo - out, hi + out, hi + out],
      [Math.min(...xs) - 1, Math.min(...ys) - 1, Math.max(...xs) + 1, Math.max(...ys) + 1]];
    const corners = ([x0, y0, x1, y1]) => [[x0, y0], [x1, y0], [x0, y1], [x0, y1], [x1, y0], [x1, y1]];
    const data = rects.flatMap(corners).flatMap(([x, y]) => [x, y, 0, (x + 0.5) / TEXTURE, (y + 0.5) / TEXTURE]);
    for (const [[a, b, c, d, e, f], rect] of eyes) {
      for (const [x, y] of corners(rect)) data.push(a * x + b * y + c, d * x + e * y + f, 0, (x + 0.5) / TEXTURE, (y + 0.5) / TEXTURE);
    }
    gl.enableVertexAttribArray(this.pos);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.holes);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(data), gl.STREAM_DRAW);
    gl.vertexAttribPointer(this.pos, 3, gl.FLOAT, false, 20, 0);
    gl.enableVertexAttribArray(this.uv);
    gl.vertexAttribPointer(this.uv, 2, gl.FLOAT, false, 20, 12);
    gl.uniform4f(this.color, 0, 0, 0, 0);
    gl.drawArrays(gl.TRIANGLES, 0, data.length / 5);
    gl.disableVertexAttribArray(this.uv);
    this._fill(ring, INSIDE);
    const gap = Math.hypot(points[3 * LIP_BOTTOM] - points[3 * LIP_TOP], points[3 * LIP_BOTTOM + 1] - points[3 * LIP_TOP + 1]);
    if (gap > 2) {
      // short of the corners, where the lips meet
      const upper = UPPER_INNER_LIP.map(at), down = Math.min(gap * 0.4, 0.03 * TEXTURE);
      this._fill([...upper, ...upper.map(([x, y], k) => [x, y + down * TEETH_PROFILE[k]]).reverse()], TEETH);
    }
  }

  /** Fills a polygon (any simple one, even-odd as OpenCV's fillPoly) in a flat colour, through the stencil. */
  _fill(polygon, rgb) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.polygon);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(polygon.flatMap(([x, y]) => [x, y, 0])), gl.STREAM_DRAW);
    gl.vertexAttribPointer(this.pos, 3, gl.FLOAT, false, 0, 0);
    gl.enable(gl.STENCIL_TEST);
    gl.colorMask(false, false, false, false);
    gl.stencilFunc(gl.ALWAYS, 0, 1);
    gl.stencilOp(gl.KEEP, gl.KEEP, gl.INVERT);
    gl.drawArrays(gl.TRIANGLE_FAN, 0, polygon.length);
    gl.colorMask(true, true, true, true);
    gl.stencilFunc(gl.EQUAL, 1, 1);
    gl.stencilOp(gl.ZERO, gl.ZERO, gl.ZERO);
    gl.uniform4f(this.color, rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, 1);
    gl.drawArrays(gl.TRIANGLE_FAN, 0, polygon.length);
    gl.disable(gl.STENCIL_TEST);
  }
}

let shared;

/** The page's one photo-avatar renderer, or null without WebGL. */
export function sharedRenderer() {
  if (shared === undefined) {
    shared = new SharedRenderer();
    if (!shared.gl) console.warn("photo avatars: no WebGL, the cartoon draws instead");
  }
  return shared.gl ? shared : null;
}

const photos = new Map();   // name -> Promise of {name, rig, image}

/** An avatar's rig and texture from the server, fetched once per name. */
export async function loadPhotoAvatar(name) {
  let photo = photos.get(name);
  if (!photo) {
    const base = `/api/avatar/${encodeURIComponent(name)}/`;
    const get = async (file) => {
      const response = await fetch(base + file);
      if (!response.ok) throw new Error(`${base}${file}: HTTP ${response.status}`);
      return response;
    };
    photo = Promise.all([get("mesh.json").then((r) => r.json()), get("texture.png").then((r) => r.blob())
      .then((blob) => createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" }))])
      .then(([mesh, image]) => ({ name, rig: new Rig(mesh), image }));
    photos.set(name, photo);
    photo.catch(() => photos.delete(name));   // a later tile may try again
  }
  return photo;
}

/** A participant drawn from their photo; the cartoon while it loads, or for good without WebGL. */
export class PhotoAvatarView extends AvatarView {
  constructor(canvas, palette, avatarName) {
    super(canvas, palette);
    this.avatarName = avatarName;
    this.photo = null;
    loadPhotoAvatar(avatarName).then((photo) => { this.photo = photo; this.dirty = true; },
      (err) => console.warn(`photo avatar ${avatarName}: ${err.message}; the cartoon draws instead`));
  }

  draw() {
    const renderer = this.photo && sharedRenderer();
    if (!renderer || !renderer.draw(this.photo, this.current, this.ctx, this)) super.draw();
  }
}
