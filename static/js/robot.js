// The AI host's face: a friendly robot with a screen for a face. LED eyes, brows and mouth follow the same
// PoseData fields as a person's cartoon (eye_*, gaze_*, brow_*, mouth_*, smile, jaw_open); the antenna
// lights up as the mouth opens. Drawn in avatar.js's 340 x 340 design space, head centre at the origin.

const LED = "#38bdf8";
const LED_DIM = "#0c4a6e";

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.roundRect(x, y, w, h, Math.min(r, w / 2, h / 2));
}

export function drawRobotBody(ctx, p, pal, fx) {
  const nx = fx * 0.2;
  ctx.fillStyle = pal.shade;                                 // neck: two rings
  for (const y of [88, 110]) {
    roundRect(ctx, -26 + nx, y, 52, 18, 6);
    ctx.fill();
  }
  ctx.beginPath();                                           // torso (the tile shows its shoulders)
  ctx.moveTo(-140, 260);
  ctx.bezierCurveTo(-140, 180, -110, 140, -50 + nx, 134);
  ctx.lineTo(50 + nx, 134);
  ctx.bezierCurveTo(110, 140, 140, 180, 140, 260);
  ctx.closePath();
  ctx.fillStyle = pal.shirt;
  ctx.fill();
}

export function drawRobotHead(ctx, p, pal, fx, fy) {
  const rx = 100 - Math.abs(Math.sin(p.yaw)) * 10;
  const talk = Math.min(1, p.mouth_open * 1.4 + p.jaw_open * 0.4);
  drawAntenna(ctx, fx, talk, pal);
  for (const side of [-1, 1]) {                              // ear pods, the far one hidden by a strong turn
    if (side * Math.sin(p.yaw) > 0.55) continue;
    roundRect(ctx, side * (rx + 4) - 11 - fx * 0.3, -40 + fy * 0.2, 22, 60, 9);
    ctx.fillStyle = pal.hair;
    ctx.fill();
  }
  roundRect(ctx, -rx, -118, rx * 2, 222 + p.jaw_open * 8, 46);    // head shell
  ctx.fillStyle = pal.skin;
  ctx.fill();
  ctx.strokeStyle = pal.hair;
  ctx.lineWidth = 4;
  ctx.stroke();
  const vx = fx * 0.45, vy = fy * 0.35;                      // the face screen slides with the turn
  roundRect(ctx, -rx + 16 + vx, -88 + vy, rx * 2 - 32, 172 + p.jaw_open * 8, 32);
  ctx.fillStyle = "#0f172a";
  ctx.fill();
  ctx.save();
  ctx.clip();                                                // features stay on the screen
  const k = Math.cos(p.yaw);
  for (const side of [-1, 1]) {
    const far = 1 - 0.3 * Math.max(0, side * Math.sin(p.yaw));
    const ex = side * 36 * k + fx;
    drawEye(ctx, ex, -22 + fy, far, side < 0 ? p.eye_l : p.eye_r, p, pal);
    drawBrow(ctx, ex, -54 + fy, far, side, side < 0 ? p.brow_l : p.brow_r);
    ctx.globalAlpha = 0.15 + 0.45 * Math.max(0, p.smile);    // cheek lights
    ctx.fillStyle = "#f472b6";
    ctx.beginPath();
    ctx.ellipse(side * 60 * k + fx * 0.9, 14 + fy, 11 * far, 6, 0, 0, Math.PI * 2);
    ctx.fill();
    ctx.globalAlpha = 1;
  }
  drawMouth(ctx, fx * 1.05, 40 + fy * 0.9 + p.jaw_open * 8, p);
  ctx.restore();
}

function drawAntenna(ctx, fx, talk, pal) {
  const x = fx * 0.35;
  ctx.beginPath();
  ctx.moveTo(fx * 0.2, -116);
  ctx.lineTo(x, -150);
  ctx.strokeStyle = pal.hair;
  ctx.lineWidth = 6;
  ctx.lineCap = "round";
  ctx.stroke();
  ctx.save();
  ctx.shadowColor = "#fbbf24";
  ctx.shadowBlur = 24 * talk;
  ctx.beginPath();
  ctx.arc(x, -158, 12, 0, Math.PI * 2);
  ctx.fillStyle = talk > 0.05 ? `rgb(251 ${Math.round(191 + 40 * talk)} ${Math.round(36 + 150 * talk)})` : "#f59e0b";
  ctx.fill();
  ctx.restore();
}

function drawEye(ctx, x, y, far, open, p, pal) {
  const rx = 17 * far;
  const ry = 17 * Math.max(open, 0);
  ctx.save();
  ctx.shadowColor = LED;
  ctx.shadowBlur = 12;
  if (open < 0.15) {                                         // closed: a short LED bar
    ctx.beginPath();
    ctx.moveTo(x - rx, y + 2);
    ctx.quadraticCurveTo(x, y + 8, x + rx, y + 2);
    ctx.strokeStyle = LED;
    ctx.lineWidth = 5;
    ctx.lineCap = "round";
    ctx.stroke();
    ctx.restore();
    return;
  }
  ctx.beginPath();
  ctx.ellipse(x, y, rx, ry, 0, 0, Math.PI * 2);
  ctx.fillStyle = pal.iris;
  ctx.fill();
  ctx.restore();
  const ix = x + p.gaze_x * 6 * far, iy = y - p.gaze_y * 5;  // a bright pupil that looks around
  ctx.beginPath();
  ctx.ellipse(ix, iy, 7 * far, Math.min(7, ry * 0.5), 0, 0, Math.PI * 2);
  ctx.fillStyle = "#e0f2fe";
  ctx.fill();
}

function drawBrow(ctx, x, y, far, side, brow) {
  const lift = brow * 9;
  const inner = brow < 0 ? -brow * 7 : 0;                    // a frown tips the inner ends down
  ctx.beginPath();
  ctx.moveTo(x - side * 16 * far, y - lift + inner);
  ctx.lineTo(x + side * 16 * far, y - lift - Math.max(brow, 0) * 3);
  ctx.strokeStyle = LED;
  ctx.lineWidth = 6;
  ctx.lineCap = "round";
  ctx.stroke();
}

function drawMouth(ctx, x, y, p) {
  const w = 26 + 26 * p.mouth_wide - 12 * p.mouth_round;
  const h = 42 * p.mouth_open + 12 * p.jaw_open * p.mouth_open;
  const lift = 10 * p.smile;
  ctx.save();
  ctx.shadowColor = LED;
  ctx.shadowBlur = 10;
  ctx.strokeStyle = LED;
  ctx.lineCap = "round";
  if (h < 2.5) {                                             // closed: an LED line, curved by the smile
    ctx.beginPath();
    ctx.moveTo(x - w, y - lift * 0.6);
    ctx.quadraticCurveTo(x, y + lift * 0.9, x + w, y - lift * 0.6);
    ctx.lineWidth = 5;
    ctx.stroke();
    ctx.restore();
    return;
  }
  const top = y - h * 0.45, height = h + 4;               // open: a rounded screen, a level meter inside
  roundRect(ctx, x - w, top, w * 2, height, Math.min(height / 2, 14));
  ctx.fillStyle = LED_DIM;
  ctx.fill();
  ctx.lineWidth = 4;
  ctx.stroke();
  ctx.clip();
  ctx.shadowBlur = 0;
  ctx.fillStyle = LED;
  const bars = 6, gap = (w * 2) / (bars + 1);
  for (let i = 1; i <= bars; i++) {
    const bh = height * (0.3 + 0.55 * Math.abs(Math.sin(i * 1.9 + p.mouth_round * 2 + p.mouth_wide)));
    roundRect(ctx, x - w + i * gap - 3, top + (height - bh) / 2, 6, bh, 3);
    ctx.fill();
  }
  ctx.restore();
}
