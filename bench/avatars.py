"""Photo avatars, measured: fidelity (the page draws an avatar at known PoseData, the browser's face landmarker
reads the drawing, the capture code turns its landmarks into PoseData again), the page's frame rate with 1, 4
and 16 photo avatars, the server renderer's speed and the MP4's bytes per second of speech.

    python -m bench.avatars --json

Everything runs against our own server (gunicorn, started here) in headless Chromium with software WebGL; the
page code is the product's (static/js/photoavatar.js, avatar.js, pose.js, the vendored FaceLandmarker), loaded
into the start page by the harness below. The last line is the JSON of the issue.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import tempfile
import time

import numpy as np

from bench.server import GunicornServer

GRID = {"yaw": (-0.35, 0.0, 0.35), "pitch": (-0.2, 0.0, 0.2), "mouth_open": (0.0, 0.5),
        "eye": (0.3, 1.0), "smile": (0.0, 0.7)}

FIDELITY_JS = """
const [poses, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const [photoMod, cartoon, capture, posedata, vision] = await Promise.all([
    import('/static/js/photoavatar.js'), import('/static/js/avatar.js'), import('/static/js/pose.js'),
    import('/static/js/posedata.js'), import('/static/vendor/vision_bundle.mjs')]);
  const fileset = await vision.FilesetResolver.forVisionTasks('/static/vendor/wasm');
  const landmarker = await vision.FaceLandmarker.createFromOptions(fileset, {baseOptions: {
    modelAssetPath: '/static/vendor/face_landmarker.task', delegate: 'CPU'}, runningMode: 'IMAGE', numFaces: 1,
    outputFaceBlendshapes: false});
  const photo = await photoMod.loadPhotoAvatar('astronaut');
  const renderer = photoMod.sharedRenderer();
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 512;
  canvas.style.width = canvas.style.height = '512px';
  document.body.appendChild(canvas);
  const ctx = canvas.getContext('2d');
  const next = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const read = () => {
    const found = landmarker.detect(canvas).faceLandmarks[0];
    return found ? capture.landmarksToPose(found, 512, 512) : null;
  };
  const out = [];
  for (const asked of poses) {
    const pose = {...posedata.neutralPose(), ...asked};
    if (!renderer || !renderer.draw(photo, pose, ctx, canvas)) { done({error: 'no WebGL'}); return; }
    await next();
    const photoGot = read();
    cartoon.drawFace(ctx, 512, 512, pose, cartoon.paletteFor(1));
    const cartoonGot = read();
    out.push({asked, photo: photoGot, cartoon: cartoonGot});
  }
  done({results: out});
})().catch((e) => done({error: String(e && e.stack || e)}));
"""

FPS_JS = """
const [count, seconds, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const [photoMod, cartoon] = await Promise.all([import('/static/js/photoavatar.js'), import('/static/js/avatar.js')]);
  await photoMod.loadPhotoAvatar('astronaut');
  document.body.innerHTML = '';
  const grid = document.createElement('div');
  grid.style.cssText = 'display:grid;grid-template-columns:repeat(4,240px);gap:4px';
  document.body.appendChild(grid);
  const views = [];
  for (let i = 0; i < count; i++) {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 240;
    grid.appendChild(canvas);
    views.push(new photoMod.PhotoAvatarView(canvas, cartoon.paletteFor(i), 'astronaut'));
  }
  while (!views.every((v) => v.photo)) await new Promise((r) => setTimeout(r, 20));
  let frames = 0, start = null, last = performance.now();
  await new Promise((resolve) => {
    const frame = (now) => {
      const t = now / 1000;
      views.forEach((v, i) => v.setTarget({yaw: 0.3 * Math.sin(t * 2 + i), pitch: 0.15 * Math.sin(t * 1.3 + i),
        mouth_open: 0.5 + 0.5 * Math.sin(t * 9 + i), eye_l: 1, eye_r: 1, smile: 0.3 * Math.sin(t + i)}));
      views.forEach((v) => v.step(now - last));
      last = now;
      if (start === null) start = now; else frames += 1;
      if (now - start >= seconds * 1000) resolve(); else requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
  done({fps: frames / ((performance.now() - start) / 1000)});
})().catch((e) => done({error: String(e && e.stack || e)}));
"""


def grid_poses() -> list[dict]:
    out = []
    for yaw, pitch, mouth, eye, smile in itertools.product(*GRID.values()):
        # mouth_wide 0.5: a relaxed mouth's width in the capture's scale (the protocol's neutral, 0, is pursed)
        out.append({"yaw": yaw, "pitch": pitch, "mouth_open": mouth, "jaw_open": mouth * 0.6, "eye_l": eye,
                    "eye_r": eye, "smile": smile, "mouth_wide": 0.5})
    return out


def errors(results: list[dict], key: str) -> dict:
    """Mean absolute errors of what the landmarker and the capture code read back, over the poses where a face
    was found (and how many those were)."""
    found = [r for r in results if r[key]]
    if not found:
        return {"found": 0, "of": len(results)}

    def mae(field, degrees=False):
        values = [abs(r[key][field] - r["asked"][field]) for r in found]
        return round(float(np.mean(values)) * (180 / math.pi if degrees else 1), 3)
    eye = [abs(r[key][f] - r["asked"][f]) for r in found for f in ("eye_l", "eye_r")]
    return {"yaw_mae_deg": mae("yaw", True), "pitch_mae_deg": mae("pitch", True),
            "mouth_open_mae": mae("mouth_open"), "eye_mae": round(float(np.mean(eye)), 3),
            "smile_mae": mae("smile"), "found": len(found), "of": len(results)}


def server_render(store_dir: str, frames: int = 100) -> dict:
    """The server renderer at 512 x 512 over a moving face (the astronaut as the server made it): ms per frame,
    and the real-time factor at 25 fps."""
    import cv2

    from avatars.render import Renderer
    from avatars.store import BUILTIN, AvatarStore
    store = AvatarStore(store_dir, 1 << 20)
    texture = cv2.cvtColor(cv2.imread(str(store.texture_path(BUILTIN))), cv2.COLOR_BGR2RGB)
    renderer = Renderer(texture, store.mesh(BUILTIN))
    renderer.render({})                                      # warm-up
    times = []
    for i in range(frames):
        t = i / 25
        pose = {"yaw": 0.3 * math.sin(t * 2), "pitch": 0.15 * math.sin(t * 1.3), "mouth_open": 0.5 + 0.5 * math.sin(t * 9),
                "jaw_open": 0.3, "eye_l": 1.0, "eye_r": 1.0, "smile": 0.3 * math.sin(t)}
        start = time.perf_counter()
        renderer.render(pose)
        times.append((time.perf_counter() - start) * 1000)
    ms = float(np.median(times))
    return {"render_ms_per_frame": round(ms, 2), "render_ms_p90": round(float(np.percentile(times, 90)), 2),
            "render_realtime_factor": round(40.0 / ms, 2)}


def mp4_figures(text: str) -> dict:
    """A spoken sentence through avatars.say: the MP4's bytes per second (crf 23, 512 x 512)."""
    try:
        from avatars.say import render_speech
    except ImportError as exc:
        return {"mp4_error": f"avatars.say unavailable: {exc}"}
    with tempfile.TemporaryDirectory() as tmp:
        figures = render_speech(text, f"{tmp}/speech.mp4")
    return {"mp4_bytes_per_s": round(figures["bytes_per_s"]), "mp4_first_frame_ms": figures.get("first_frame_ms"),
            "mp4_realtime_factor": figures.get("realtime_factor")}


def browser_figures(server: GunicornServer, fps_seconds: float) -> dict:
    from tests.browser_util import WEBGL_ARGS, chromium
    with chromium(extra_args=WEBGL_ARGS) as page:
        page.set_script_timeout(600)
        page.get(server.url + "/")
        got = page.execute_async_script(FIDELITY_JS, grid_poses())
        if "error" in got:
            raise RuntimeError(f"the fidelity harness failed: {got['error']}")
        fps = {}
        for n in (1, 4, 16):
            page.get(server.url + "/")
            result = page.execute_async_script(FPS_JS, n, fps_seconds)
            if "error" in result:
                raise RuntimeError(f"the frame-rate harness failed: {result['error']}")
            fps[str(n)] = round(result["fps"], 1)
    return {"photo": errors(got["results"], "photo"), "cartoon": errors(got["results"], "cartoon"), "page_fps": fps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps-seconds", type=float, default=5.0)
    ap.add_argument("--text", default="Good morning everyone. Let us look at the budget first, then the hiring plan.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    avatars = f"{tempfile.mkdtemp(prefix='avatar-bench-')}/avatars"
    os.environ["AVATAR_PHOTO_AVATARS_DIR"] = avatars          # the server's, and avatars.say's here: not the user's
    server = GunicornServer("run:create_app()", 64, {"AVATAR_HOST_ENABLED": "0"}).start()
    try:
        server.request("GET", "/api/avatar/list", timeout=60)                  # builds the astronaut once
        out = browser_figures(server, args.fps_seconds)
    finally:
        server.stop()
    out.update(server_render(avatars))
    out.update(mp4_figures(args.text))
    out["goal_met"] = {
        "photo_yaw_pitch_le_4deg": out["photo"].get("yaw_mae_deg", 99) <= 4 and out["photo"].get("pitch_mae_deg", 99) <= 4,
        "photo_mouth_eye_le_0.10": out["photo"].get("mouth_open_mae", 9) <= 0.1 and out["photo"].get("eye_mae", 9) <= 0.1,
        "page_fps_16_ge_24": out["page_fps"]["16"] >= 24,
        "render_realtime_ge_2": out["render_realtime_factor"] >= 2,
        "mp4_le_100kb_per_s": out.get("mp4_bytes_per_s", 1e9) <= 100_000}
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    if not args.json:
        print(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
