// A participant's 2D cartoon face on a canvas, eased towards the latest pose it was given; the AI host is
// drawn as a robot (robot.js) driven by the same fields.
import { neutralPose } from "./protocol.js";
import { drawRobotBody, drawRobotHead } from "./robot.js";

const PALETTES = [
  { bg: "#dbeafe", skin: "#f2c7a5", shade: "#d9a07f", hair: "#3b2a20", shirt: "#2563eb", iris: "#5b3a1e", style: "short" },
  { bg: "#fce7f3", skin: "#e8b48f", shade: "#c98d68", hair: "#171717", shirt: "#db2777", iris: "#2d1b0e", style: "long" },
  { bg: "#dcfce7", skin: "#a9744f", shade: "#8a5a3a", hair: "#1c1917", shirt: "#16a34a", iris: "#1f130a", style: "bun" },
  { bg: "#fef3c7", skin: "#f6d5bd", shade: "#dfb092", hair: "#b45309", shirt: "#d97706", iris: "#2f6f8f", style: "long" },
  { bg: "#ede9fe", skin: "#c68e68", shade: "#a8714f", hair: "#44403c", shirt: "#7c3aed", iris: "#3a2614", style: "short" },
  { bg: "#e0f2fe", skin: "#7d5338", shade: "#643f29", hair: "#0c0a09", shirt: "#0891b2", iris: "#1a0f08", style: "bun" },
];
const HOST_PALETTE = { bg: "#e0e7ff", skin: "#e2e8f0", shade: "#94a3b8", hair: "#6366f1", shirt: "#4f46e5", iris: "#38bdf8", style: "robot" };

export function paletteFor(slot, host = false) {
  return host ? HOST_PALETTE : PALETTES[((slot % PALETTES.length) + PALETTES.length) % PALETTES.length];
}

// Oculus visemes (sil PP FF TH DD kk CH SS nn RR aa E I O U) -> [mouth_open, mouth_wide, mouth_round].
const VISEME_MOUTH = [
  [0, 0.5, 0], [0, 0.45, 0.1], [0.1, 0.55, 0], [0.2, 0.55, 0], [0.25, 0.55, 0], [0.3, 0.5, 0],
  [0.25, 0.35, 0.4], [0.15, 0.65, 0], [0.2, 0.5, 0], [0.25, 0.4, 0.3], [0.8, 0.55, 0],
  [0.45, 0.75, 0], [0.3, 0.85, 0], [0.6, 0.2, 0.8], [0.3, 0.1, 1],
];

/** The mouth fields for a viseme at `weight` (0..255). */
export function visemeMouth(viseme, weight) {
  const w = weight / 255;
  const [open, wide, round] = VISEME_MOUTH[viseme] ?? VISEME_MOUTH[0];
  return { mouth_open: open * w, mouth_wide: 0.5 + (wide - 0.5) * w, mouth_round: round * w, jaw_open: open * w * 0.6 };
}

const EASE_MS = 60;      // time constant of the easing towards the target
const SNAP = 1e-3;       // closer than this, a field jumps to its target (so a still face draws still)

export class AvatarView {
  constructor(canvas, palette) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.palette = palette;
    this.current = neutralPose();
    this.target = neutralPose();
    this.dirty = true;
  }

  setTarget(pose) {
    Object.assign(this.target, pose);
    this.dirty = true;
  }

  /** Moves `current` towards `target`; true when something moved. */
  step(dtMs) {
    if (!this.dirty) return false;
    const a = 1 - Math.exp(-Math.max(dtMs, 0) / EASE_MS);
    let moving = false;
    for (const k of Object.keys(this.target)) {
      const d = this.target[k] - this.current[k];
      if (Math.abs(d) <= SNAP) {
        this.current[k] = this.target[k];
      } else {
        this.current[k] += d * a;
        moving = true;
      }
    }
    this.draw();
    this.dirty = moving;
    return true;
  }

  draw() {
    drawFace(this.ctx, this.canvas.width, this.canvas.height, this.current, this.palette);
  }
}

/** One requestAnimationFrame loop for every view that `views()` returns; `beforeFrame()` runs first. */
export function startRenderLoop(views, beforeFrame = () => {}) {
  let last = performance.now();
  const frame = (now) => {
    beforeFrame();
    for (const view of views()) view.step(now - last);
    last = now;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

function ellipse(ctx, x, y, rx, ry, fill, stroke, width = 2) {
  ctx.beginPath();
  ctx.ellipse(x, y, Math.max(rx, 0.1), Math.max(ry, 0.1), 0, 0, Math.PI * 2);
  if (fill) { ctx.fillStyle = fill; ctx.fill(); }
  if (stroke) { ctx.strokeStyle = stroke; ctx.lineWidth = width; ctx.stroke(); }
}

/** Draws `p` (pose fields) in a 340 x 340 design space scaled to the canvas. */
export function drawFace(ctx, width, height, p, pal) {
  ctx.save();
  ctx.fillStyle = pal.bg;
  ctx.fillRect(0, 0, width, height);
  const s = (Math.min(width, height) / 340) * (1 + 0.2 * p.z);
  ctx.translate(width / 2 + p.x * width * 0.16, height * 0.54 - p.y * height * 0.1);
  ctx.scale(s, s);
  const fx = Math.sin(p.yaw) * 42;          // how far the features slide with the head's turn
  const fy = -Math.sin(p.pitch) * 40;
  const robot = pal.style === "robot";
  if (robot) {                                        // taller than a head with its antenna: a little smaller
    ctx.translate(0, 14);
    ctx.scale(0.94, 0.94);
  }
  (robot ? drawRobotBody : drawBody)(ctx, p, pal, fx);
  ctx.translate(0, -20);
  ctx.rotate(p.roll);
  (robot ? drawRobotHead : drawHead)(ctx, p, pal, fx, fy);
  ctx.restore();
}

function drawBody(ctx, p, pal, fx) {
  ctx.fillStyle = pal.shade;
  ctx.fillRect(-30 + fx * 0.2, 60, 60, 90);
  ctx.beginPath();
  ctx.moveTo(-150, 260);
  ctx.bezierCurveTo(-150, 170, -100, 150, -40 + fx * 0.2, 140);
  ctx.lineTo(40 + fx * 0.2, 140);
  ctx.bezierCurveTo(100, 150, 150, 170, 150, 260);
  ctx.closePath();
  ctx.fillStyle = pal.shirt;
  ctx.fill();
}

function headPath(ctx, rx, chinY, fx) {
  ctx.beginPath();
  ctx.moveTo(-rx, -10);
  ctx.bezierCurveTo(-rx, -150, rx, -150, rx, -10);
  ctx.bezierCurveTo(rx, 60, 45 + fx * 0.3, chinY, fx * 0.3, chinY);
  ctx.bezierCurveTo(-45 + fx * 0.3, chinY, -rx, 60, -rx, -10);
  ctx.closePath();
}

function drawHead(ctx, p, pal, fx, fy) {
  const rx = 92 - Math.abs(Math.sin(p.yaw)) * 8;
  const chinY = 118 + p.jaw_open * 16 + fy * 0.15;
  if (pal.style === "long") {                          // hair falling behind the head to the shoulders
    const hx = -fx * 0.3, w = rx + 22;
    ctx.beginPath();
    ctx.ellipse(hx, -10, w, 150, 0, Math.PI, Math.PI * 2);
    ctx.lineTo(hx + w, 105);
    ctx.quadraticCurveTo(hx + w, 125, hx + w - 20, 125);
    ctx.lineTo(hx - w + 20, 125);
    ctx.quadraticCurveTo(hx - w, 125, hx - w, 105);
    ctx.closePath();
    ctx.fillStyle = pal.hair;
    ctx.fill();
  }
  for (const side of [-1, 1]) {                         // ears, the far one hidden by a strong turn
    if (side * Math.sin(p.yaw) > 0.55) continue;
    ellipse(ctx, side * (rx - 2) - fx * 0.35, 5 + fy * 0.3, 14, 24, pal.skin, pal.shade);
  }
  headPath(ctx, rx, chinY, fx);
  ctx.fillStyle = pal.skin;
  ctx.fill();
  ctx.strokeStyle = pal.shade;
  ctx.lineWidth = 2.5;
  ctx.stroke();
  drawHair(ctx, rx, pal, fx, fy);
  const k = Math.cos(p.yaw);
  for (const side of [-1, 1]) {
    const far = 1 - 0.3 * Math.max(0, side * Math.sin(p.yaw));
    const ex = side * 36 * k + fx;
    drawEye(ctx, ex, -8 + fy, far, side < 0 ? p.eye_l : p.eye_r, p, pal);
    drawBrow(ctx, ex, -40 + fy, far, side, side < 0 ? p.brow_l : p.brow_r, pal);
    const blush = 0.12 + 0.25 * Math.max(0, p.smile);
    ctx.globalAlpha = blush;
    ellipse(ctx, side * 56 * k + fx * 0.9, 34 + fy, 16 * far, 10, "#f43f5e");
    ctx.globalAlpha = 1;
  }
  drawNose(ctx, fx * 1.25, 22 + fy, pal);
  drawMouth(ctx, fx * 1.05, 62 + fy * 0.9 + p.jaw_open * 10, p, pal);
}

function drawHair(ctx, rx, pal, fx, fy) {
  ctx.save();
  ctx.beginPath();
  ctx.moveTo(-rx - 4, -4);
  ctx.bezierCurveTo(-rx - 8, -165, rx + 8, -165, rx + 4, -4);
  ctx.bezierCurveTo(rx - 6, -55, 30 + fx * 0.5, -78 + fy * 0.3, fx * 0.3, -72 + fy * 0.3);
  ctx.bezierCurveTo(-40 + fx * 0.5, -70 + fy * 0.3, -rx + 6, -60, -rx - 4, -4);
  ctx.closePath();
  ctx.fillStyle = pal.hair;
  ctx.fill();
  if (pal.style === "bun") ellipse(ctx, fx * 0.2, -132, 34, 26, pal.hair);
  ctx.restore();
}

function drawEye(ctx, x, y, far, open, p, pal) {
  const rx = 16 * far;
  const ry = 11 * Math.max(open, 0);
  if (open < 0.12) {                                   // closed: a lash line
    ctx.beginPath();
    ctx.moveTo(x - rx, y);
    ctx.quadraticCurveTo(x, y + 5, x + rx, y);
    ctx.strokeStyle = "#1f1f1f";
    ctx.lineWidth = 3;
    ctx.stroke();
    return;
  }
  ctx.save();
  ctx.beginPath();
  ctx.ellipse(x, y, rx, ry, 0, 0, Math.PI * 2);
  ctx.fillStyle = "#ffffff";
  ctx.fill();
  ctx.clip();
  const ix = x + p.gaze_x * 7 * far, iy = y - p.gaze_y * 5;
  ellipse(ctx, ix, iy, 8 * far, 8, pal.iris);
  ellipse(ctx, ix, iy, 4 * far, 4, "#0a0a0a");
  ellipse(ctx, ix + 2.5, iy - 2.5, 1.8, 1.8, "#ffffff");
  ctx.restore();
  ctx.beginPath();                                     // upper lid
  ctx.ellipse(x, y, rx, ry, 0, Math.PI * 1.05, Math.PI * 1.95);
  ctx.strokeStyle = "#1f1f1f";
  ctx.lineWidth = 3;
  ctx.stroke();
}

function drawBrow(ctx, x, y, far, side, brow, pal) {
  const lift = brow * 10;
  const inner = brow < 0 ? -brow * 6 : 0;              // a frown pulls the inner ends down
  ctx.beginPath();
  ctx.moveTo(x - side * 14 * far, y - lift + inner);
  ctx.quadraticCurveTo(x + side * 2, y - lift - 6 - Math.max(brow, 0) * 4, x + side * 18 * far, y - lift + 2);
  ctx.strokeStyle = pal.hair;
  ctx.lineWidth = 5;
  ctx.lineCap = "round";
  ctx.stroke();
}

function drawNose(ctx, x, y, pal) {
  ctx.beginPath();
  ctx.moveTo(x - 2, y - 22);
  ctx.quadraticCurveTo(x - 9, y + 4, x - 4, y + 6);
  ctx.quadraticCurveTo(x + 2, y + 9, x + 8, y + 5);
  ctx.strokeStyle = pal.shade;
  ctx.lineWidth = 2.5;
  ctx.lineCap = "round";
  ctx.stroke();
}

function drawMouth(ctx, x, y, p, pal) {
  const w = 20 + 20 * p.mouth_wide - 9 * p.mouth_round + 5 * Math.max(p.smile, 0);
  const h = 30 * p.mouth_open + 8 * p.jaw_open * p.mouth_open;
  const lift = 10 * p.smile;                           // corners up (smile) or down (frown)
  const lipColor = "#b4464b";
  ctx.lineCap = "round";
  if (h < 2) {
    ctx.beginPath();
    ctx.moveTo(x - w, y - lift * 0.6);
    ctx.quadraticCurveTo(x, y + lift * 0.9, x + w, y - lift * 0.6);
    ctx.strokeStyle = lipColor;
    ctx.lineWidth = 4;
    ctx.stroke();
    return;
  }
  const upper = y - h * 0.35 - lift * 0.1;
  const lower = y + h * 1.25 + lift * 0.5;
  ctx.save();
  ctx.beginPath();
  ctx.moveTo(x - w, y - lift * 0.5);
  ctx.quadraticCurveTo(x, upper, x + w, y - lift * 0.5);
  ctx.quadraticCurveTo(x, lower, x - w, y - lift * 0.5);
  ctx.closePath();
  ctx.fillStyle = "#5b1a22";
  ctx.fill();
  ctx.clip();
  ctx.fillStyle = "#fafafa";                           // teeth
  ctx.fillRect(x - w, upper - 4, w * 2, Math.min(8, h * 0.35) + 4);
  ellipse(ctx, x, lower - 4, w * 0.55, Math.min(8, h * 0.3), "#e06b75");   // tongue
  ctx.restore();
  ctx.beginPath();
  ctx.moveTo(x - w, y - lift * 0.5);
  ctx.quadraticCurveTo(x, upper, x + w, y - lift * 0.5);
  ctx.quadraticCurveTo(x, lower, x - w, y - lift * 0.5);
  ctx.strokeStyle = lipColor;
  ctx.lineWidth = 3.5;
  ctx.stroke();
}
