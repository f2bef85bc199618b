"""Photo avatars in the browser (static/js/photoavatar.js): its rig equals avatars/rig.py's, its WebGL drawing in
headless Chromium equals avatars/render.py's, expressions change the right pixels, and 16 animating tiles keep
their frame rate. The page is tests/photo_page.html, served with the astronaut avatar by tests/photo_page.py."""
from __future__ import annotations

import base64
import collections
import json
import os
import pathlib
import shutil
import subprocess
import time

import cv2
import numpy as np
import pytest

from avatars.face import TEXTURE, FaceMesh
from avatars.render import MOUTH_RING, Renderer
from avatars.rig import BROW_L, BROW_R, EYE_L, EYE_R, MOUTH_L, MOUTH_R, Rig
from tests.browser_util import WEBGL_ARGS, browser_log, chromium, wait_for
from tests.photo_page import ROOT, build_astronaut, serve

pytestmark = pytest.mark.slow

# Each over a relaxed mouth (mouth_wide 0.5, as the capture reads one; the protocol's neutral 0 is pursed)
FRAMES = {name: {"mouth_wide": 0.5, **fields} for name, fields in {
    "rest": {}, "turned": {"yaw": -0.35}, "mouth_open": {"mouth_open": 0.8, "jaw_open": 0.6},
    "eyes_closed": {"eye_l": 0.0, "eye_r": 0.0}, "smiling": {"smile": 0.9}}.items()}
RIG_POSES = [{}, {"yaw": -0.35}, {"yaw": 0.6, "pitch": -0.3}, {"pitch": 0.3, "roll": -0.2},
             {"eye_l": 0.0, "eye_r": 0.1}, {"eye_l": 0.5, "gaze_x": 0.5, "gaze_y": -0.4}, {"brow_l": 1.0, "brow_r": -1.0},
             {"mouth_open": 0.8, "jaw_open": 0.6}, {"mouth_wide": 0.1, "smile": -0.7},
             {"smile": 0.9, "mouth_wide": 1.0, "jaw_open": 1.0}, {"x": 0.3, "y": -0.2, "z": -0.5, "yaw": 0.5, "roll": 0.3}]
FPS_GOAL = 24               # 16 tiles in the meeting's layout, on a machine not busy with other work
QUIET_CORES = 0.3           # ... that is, other processes took less than this many cores meanwhile
FPS_FLOOR_MEETING = 12      # sanity bounds, however busy this 2-core machine is (software WebGL)
FPS_FLOOR = 6               # 16 tiles drawn at 360 px


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    """The astronaut's texture (RGB), mesh JSON and their directory."""
    dest = tmp_path_factory.mktemp("astronaut")
    texture, mesh = build_astronaut(dest)
    return texture, mesh, dest


@pytest.fixture(scope="module")
def page(avatar):
    with serve(avatar[2]) as url, chromium(extra_args=WEBGL_ARGS) as driver:
        driver.get(url + "/")
        wait_for(driver, "return !!window.photoPage", 10, "the photo page")
        yield driver


@pytest.fixture(scope="module")
def frames(page, tmp_path_factory) -> dict[str, tuple[dict, np.ndarray]]:
    """name -> (the whole pose drawn, the tile's canvas as RGB), each also saved as a PNG."""
    page.execute_script("photoPage.show(1, 'astronaut'); photoPage.tileWidth(360)")   # all the canvas's pixels
    wait_for(page, "return photoPage.loaded()", 20, "the avatar loaded")
    assert page.execute_script("return photoPage.webgl()"), browser_log(page)
    out_dir = tmp_path_factory.mktemp("photo_frames")
    frames = {}
    for name, fields in FRAMES.items():
        pose = page.execute_script("return photoPage.setPose(0, arguments[0])", fields)
        wait_for(page, "return photoPage.drawn(0)", 10, f"the {name} frame")
        png = base64.b64decode(page.execute_script("return photoPage.png(0)").split(",", 1)[1])
        for path in (out_dir / f"{name}.png", pathlib.Path(f"/tmp/photo_page_{name}.png")):
            path.write_bytes(png)
        frames[name] = (pose, cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                                           cv2.COLOR_BGR2RGB))
    return frames


@pytest.fixture(scope="module")
def rig(avatar) -> Rig:
    return Rig(FaceMesh.from_json(avatar[1]))


def test_js_rig_equals_python_rig(avatar, rig, tmp_path):
    (tmp_path / "poses.json").write_text(json.dumps(RIG_POSES))
    out = subprocess.run([shutil.which("node") or "node", "--no-warnings", str(ROOT / "tests/photo_rig_node.mjs"),
                          str(avatar[2] / "mesh.json"), str(tmp_path / "poses.json")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for pose, points in zip(RIG_POSES, json.loads(out), strict=True):
        want = rig.deform3(pose)
        assert np.abs(np.reshape(points, want.shape) - want).max() < 0.01, pose
        if pose:
            assert np.abs(want - rig.deform3({})).max() > 1, f"{pose} should move the mesh"


def test_webgl_frames_equal_the_server_renderer(frames, avatar):
    renderer = Renderer(avatar[0], FaceMesh.from_json(avatar[1]))
    for name, (pose, frame) in frames.items():
        server = renderer.render(pose, size=frame.shape[0])
        diff = np.abs(server.astype(float) - frame)
        assert diff.mean() < 1.5 and np.percentile(diff, 99) < 20, (name, diff.mean(), np.percentile(diff, 99))


def test_open_mouth_is_dark_inside(frames, rig):
    (pose, opened), (_, rest) = frames["mouth_open"], frames["rest"]
    inside = _mask(rig.deform3(pose), MOUTH_RING, opened.shape[0])
    assert inside.sum() > 200
    dark = lambda frame: (frame[inside].max(axis=1) < 70).mean()     # noqa: E731
    assert dark(opened) > 0.15 and dark(rest) < 0.05, (dark(opened), dark(rest))    # the server's: 0.19 and 0
    assert _luma(opened)[inside].mean() < _luma(rest)[inside].mean() - 25                # the server's: 35 darker


def test_closed_eyes_change_the_eyes_only(frames, rig):
    (_, closed), (rest_pose, rest) = frames["eyes_closed"], frames["rest"]
    eyes = _around(rig.deform3(rest_pose), [*EYE_L["upper"], *EYE_L["lower"], *EYE_R["upper"], *EYE_R["lower"],
                                            *BROW_L, *BROW_R], rest.shape[0], pad=12)
    changed = np.abs(_luma(closed) - _luma(rest)) > 24
    assert changed[eyes].mean() > 0.1
    assert changed[~eyes].mean() < 0.002, changed[~eyes].mean()
    for eye in (EYE_L, EYE_R):              # inside the open eye's outline, most of the dark iris is gone
        inside = _mask(rig.deform3(rest_pose), [*eye["upper"], *reversed(eye["lower"])], rest.shape[0])
        dark = lambda frame: (_luma(frame)[inside] < 80).mean()     # noqa: B023, E731
        assert dark(closed) < 0.7 * dark(rest), (dark(closed), dark(rest))


def test_turn_moves_the_face(frames, rig):
    (_, turned), (rest_pose, rest) = frames["turned"], frames["rest"]
    face = _around(rig.deform3(rest_pose), list(range(478)), rest.shape[0], pad=4)
    diff = np.abs(_luma(turned) - _luma(rest))
    assert diff[face].mean() > 8 and diff[~face].mean() < 4, (diff[face].mean(), diff[~face].mean())


def test_smile_lifts_the_mouth_corners(frames, rig):
    (pose, smiling), (rest_pose, rest) = frames["smiling"], frames["rest"]
    lifted = rig.deform3(pose)[[MOUTH_L, MOUTH_R], 1] - rig.deform3(rest_pose)[[MOUTH_L, MOUTH_R], 1]
    assert (lifted < -3).all(), lifted
    mouth = _around(rig.deform3(rest_pose), [MOUTH_L, MOUTH_R, *MOUTH_RING], rest.shape[0], pad=30)
    changed = np.abs(_luma(smiling) - _luma(rest)) > 24
    assert changed[mouth].mean() > 0.02 and changed[~mouth].mean() < 0.002, (changed[mouth].mean(), changed[~mouth].mean())


@pytest.mark.parametrize(("calls", "view"), [
    ([{"avatar": "astronaut"}], "PhotoAvatarView"),
    ([{"avatar": "astronaut"}, {}], "PhotoAvatarView"),                   # left out: as before
    ([{"avatar": "astronaut"}, {"avatar": None}], "AvatarView"),
    ([{"avatar": "astronaut", "host": True}], "PhotoAvatarView"),         # a host given a photo (host_avatar)
    ([{"host": True}], "AvatarView"),                                     # the AI host keeps its robot otherwise
    ([{"avatar": "astronaut"}, {"avatar": "astronaut", "host": True}], "PhotoAvatarView"),
    ([{}, {"avatar": ""}], "AvatarView"),
])
def test_ensure_chooses_the_photo_or_the_cartoon(page, calls, view):
    kind = page.execute_script("for (const extra of arguments[0]) photoPage.grid.ensure('t', {slot: 9, name: 'T', ...extra});"
                               "const kind = photoPage.grid.view('t').constructor.name; photoPage.grid.remove('t');"
                               "return kind", calls)
    assert kind == view


def test_a_missing_avatar_keeps_the_cartoon(page):
    page.execute_script("photoPage.grid.ensure('gone', {slot: 8, name: 'Gone', avatar: 'nobody'})")
    assert "HTTP 404" in page.execute_script("return photoPage.load('nobody').then(() => 'loaded', (e) => e.message)")
    page.execute_script("photoPage.grid.view('gone').dirty = true")
    wait_for(page, "return photoPage.drawn('gone')", 10)
    assert page.execute_script("return photoPage.grid.view('gone').photo") is None
    assert _std(page, "gone") > 20                  # the cartoon drew
    page.execute_script("photoPage.grid.remove('gone')")


def test_each_avatar_is_fetched_once(page):
    page.execute_script("photoPage.show(4, 'astronaut', true); photoPage.show(2, 'astronaut')")
    wait_for(page, "return photoPage.loaded()", 20, "the avatars loaded")
    fetched = page.execute_script("return performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname)"
                                  ".filter((path) => path.startsWith('/api/avatar/'))")
    for name in ("astronaut", "astronaut-0", "astronaut-1"):
        for file in ("mesh.json", "texture.png"):
            assert fetched.count(f"/api/avatar/{name}/{file}") == 1, fetched


def test_without_webgl_the_cartoon_draws(avatar):
    with serve(avatar[2]) as url, chromium(extra_args=("--disable-webgl",)) as driver:
        driver.get(url + "/?n=1")
        wait_for(driver, "return window.photoPage && photoPage.loaded()", 20, "the avatar loaded")
        assert not driver.execute_script("return photoPage.webgl()")
        driver.execute_script("photoPage.setPose(0, {})")
        wait_for(driver, "return photoPage.drawn(0)", 10)
        assert _std(driver, 0) > 20


def test_frame_rate_with_1_4_and_16_animating_photo_avatars(page, record_property):
    """Every tile's pose changes every frame. Tiles as large as the meeting's layout makes them in a 1280 px wide
    window, all on screen (drawn at that size, about 218 px); and drawn at the canvas's full 360 px (what a screen of
    devicePixelRatio 2 asks for; here the tiles' frames crop them and the last rows are below the window).
    Three windows each, with the CPU other processes took meanwhile: the goal holds for a machine not busy with
    something else, the floors always."""
    page.set_window_size(1280, 1250)        # the meeting layout's 4 x 4 tiles all in view
    rates = {}
    for width in (None, 360):
        for n in (1, 4, 16):
            page.execute_script("photoPage.show(arguments[0], 'astronaut'); photoPage.tileWidth(arguments[1]);"
                                "photoPage.animate(true)", n, width)
            wait_for(page, "return photoPage.loaded()", 30, f"{n} avatars loaded")
            page.execute_script("return photoPage.fps(1000)")             # warm up: textures, shaders, JIT
            windows = [_with_others_cpu(lambda: page.execute_script("return photoPage.fps(2000)")) for _ in range(3)]
            page.execute_script("photoPage.animate(false)")
            for w in windows:
                assert w["drawsPerTile"] > 0.9 * w["fps"], f"{n} tiles: not every tile drew every frame: {w}"
                if width is None:                                             # (at 360 px not all fit)
                    assert w["onScreen"] == n, w
            rates[f"{n}@{width or 'meeting'}"] = {"px": windows[0]["shown"], "windows": [
                {"fps": round(w["fps"], 1), "others_cores": round(w["others"], 2)} for w in windows]}
    record_property("photo_fps", json.dumps(rates))
    pathlib.Path("/tmp/photo_page_fps.json").write_text(json.dumps(rates, indent=1))
    print("photo avatar fps:", json.dumps(rates))
    best = lambda key, quiet=False: max((w["fps"] for w in rates[key]["windows"]    # noqa: E731
                                         if not quiet or w["others_cores"] < QUIET_CORES), default=None)
    assert best("16@meeting") >= FPS_FLOOR_MEETING and best("16@360") >= FPS_FLOOR, rates
    if best("16@meeting", quiet=True) is not None:
        assert best("16@meeting", quiet=True) >= FPS_GOAL, rates


def _with_others_cpu(measure) -> dict:
    """`measure()`'s dict, with "others": the CPU cores that processes outside this test's took meanwhile."""
    start, began = _cpu_ticks(), time.monotonic()
    result = measure()
    (busy0, ours0), (busy1, ours1) = start, _cpu_ticks()
    ticks = os.sysconf("SC_CLK_TCK") * (time.monotonic() - began)
    return {**result, "others": max(0, (busy1 - busy0) - (ours1 - ours0)) / ticks}


def _cpu_ticks() -> tuple[int, int]:
    """(the busy CPU ticks of the whole machine, those of this process and its descendants), from /proc."""
    cpu = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(cpu) - cpu[3] - cpu[4]                  # all but idle and iowait
    children, ticks = collections.defaultdict(list), {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:                           # gone meanwhile
                continue
            children[int(fields[1])].append(int(entry.name))
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])     # utime + stime
    ours, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        ours += ticks.get(pid, 0)
        todo += children[pid]
    return busy, ours


def _luma(frame: np.ndarray) -> np.ndarray:
    return frame.astype(float) @ [0.299, 0.587, 0.114]


def _canvas_xy(points: np.ndarray, size: int) -> np.ndarray:
    """Texture pixels -> the canvas's pixels (pixel centres on integers in both)."""
    return (points[:, :2] + 0.5) * size / TEXTURE - 0.5


def _mask(points: np.ndarray, ids, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(_canvas_xy(points[list(ids)], size)).astype(np.int32)], 1)
    return mask.astype(bool)


def _around(points: np.ndarray, ids, size: int, pad: int) -> np.ndarray:
    """Two boxes around `ids`' points, one round those left of their mean x and one round the rest (the two eyes,
    the two mouth corners), `pad` pixels wider."""
    mask = np.zeros((size, size), bool)
    xy = _canvas_xy(points[list(ids)], size)
    for group in (xy[xy[:, 0] < xy[:, 0].mean()], xy[xy[:, 0] >= xy[:, 0].mean()]):
        (x0, y0), (x1, y1) = np.floor(group.min(0)).astype(int) - pad, np.ceil(group.max(0)).astype(int) + pad
        mask[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    return mask


def _std(driver, key) -> float:
    png = base64.b64decode(driver.execute_script("return photoPage.png(arguments[0])", key).split(",", 1)[1])
    return float(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).std())


def test_in_the_meeting_a_photo_avatar_is_drawn_for_everyone(live_server, tmp_path):
    """Two pages in a meeting: one chose the astronaut on the start page (kept in localStorage), the other the
    cartoon; the second page draws the first as the photo (its tile matches the server's rendering of the
    photo at rest far better than any cartoon would), and the first draws the second as a cartoon."""
    from tests.browser_util import CONNECTED, canvas_png
    room = f"photo-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    assert live_server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})[0] == 201
    with chromium(extra_args=WEBGL_ARGS) as ann, chromium(extra_args=WEBGL_ARGS) as bob:
        ann.get(f"{live_server}/")
        ann.execute_script("localStorage.setItem('avatarMeeting.avatar', 'astronaut')")
        ann.get(f"{live_server}/meeting/{room}?name=Ann&transport=websocket")
        wait_for(ann, CONNECTED, 30, "Ann connected")
        bob.get(f"{live_server}/meeting/{room}?name=Bob&transport=websocket")
        wait_for(bob, CONNECTED, 30, "Bob connected")
        ann_slot = ann.execute_script("return window.avatarMeeting.state.mySlot")
        bob_slot = bob.execute_script("return window.avatarMeeting.state.mySlot")
        kind = "return document.querySelector(`#avatar-grid canvas[data-slot='${arguments[0]}']`) ? " \
               "window.avatarMeeting.state.participants[arguments[0]]?.avatar : null"
        assert wait_for(bob, kind, 20, "Bob sees Ann's avatar name", ann_slot) == "astronaut"
        rest = _astronaut_rest()
        deadline = time.monotonic() + 20                 # until the texture has loaded and the loop drawn it
        while True:
            tile = _decode(canvas_png(bob, ann_slot))
            photo_gap = np.abs(tile.astype(float) - cv2.resize(rest, tile.shape[1::-1])).mean()
            if photo_gap < 25 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cartoon = _decode(canvas_png(ann, bob_slot))
        bob.save_screenshot(str(tmp_path / "bob_sees_ann.png"))
        shutil.copy(tmp_path / "bob_sees_ann.png", "/tmp/photo_meeting_bob_sees_ann.png")
    cartoon_gap = np.abs(cartoon.astype(float) - cv2.resize(rest, cartoon.shape[1::-1])).mean()
    assert photo_gap < 25 and photo_gap < cartoon_gap / 2, (photo_gap, cartoon_gap)


def _decode(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _astronaut_rest() -> np.ndarray:
    import skimage.data

    from avatars.face import build
    texture, mesh = build(skimage.data.astronaut())
    return Renderer(texture, mesh).render({}).astype(float)


def test_the_start_page_offers_the_photo_avatars_and_remembers_the_choice(live_server, tmp_path):
    from selenium.webdriver.support.ui import Select
    with chromium() as page:
        page.get(f"{live_server}/")
        wait_for(page, "return [...document.querySelectorAll('#avatar-choice option')].some(o => o.value === 'astronaut')",
                 30, "the avatar list")
        Select(page.find_element("id", "avatar-choice")).select_by_value("astronaut")
        wait_for(page, "const i = document.getElementById('avatar-preview'); return !i.hidden && i.complete && "
                       "i.naturalWidth > 0", 10, "the preview")
        assert page.execute_script("return localStorage.getItem('avatarMeeting.avatar')") == "astronaut"
        page.save_screenshot(str(tmp_path / "start.png"))
        shutil.copy(tmp_path / "start.png", "/tmp/photo_start_page.png")
        box = page.find_element("id", "avatar-preview").rect
        png = cv2.imdecode(np.frombuffer(page.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
        crop = png[int(box["y"]):int(box["y"] + box["height"]), int(box["x"]):int(box["x"] + box["width"])]
        assert crop.size and crop.std() > 20                # a picture, not an empty box
        Select(page.find_element("id", "avatar-choice")).select_by_value("")
        assert page.execute_script("return localStorage.getItem('avatarMeeting.avatar')") == ""


LANDMARKER_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  const vision = await import('/static/vendor/vision_bundle.mjs');
  const fileset = await vision.FilesetResolver.forVisionTasks('/static/vendor/wasm');
  const landmarker = await vision.FaceLandmarker.createFromOptions(fileset, {baseOptions: {
    modelAssetPath: '/static/vendor/face_landmarker.task', delegate: 'CPU'}, runningMode: 'IMAGE', numFaces: 1});
  const image = new Image();
  image.src = '/api/avatar/astronaut/texture.png';
  await image.decode();
  const found = landmarker.detect(image).faceLandmarks[0];
  done(found ? found.map((p) => [p.x * image.width, p.y * image.height]) : {error: 'no face'});
})().catch((e) => done({error: String(e && e.stack || e)}));
"""


def test_the_pages_landmarker_reads_the_face_as_the_server_does(page, avatar):
    """The page's FaceLandmarker runs the face_landmarker.task that scripts/build_assets.py builds (the face mesh
    with attention, its six outputs merged into one): on the avatar's texture it finds the 478 points the
    server's face mesh finds, refined irises included (not the eye contours' centres)."""
    from avatars.face import EYE_CONTOURS, landmarks
    page.set_script_timeout(60)
    got = page.execute_async_script(LANDMARKER_JS)
    assert isinstance(got, list), got
    browser, server = np.array(got), landmarks(avatar[0])[0][:, :2]
    error = np.linalg.norm(browser - server, axis=1)
    assert len(browser) == 478 and np.median(error) < 0.5 and error.max() < 2.0, (np.median(error), error.max())
    for k, contour in enumerate(EYE_CONTOURS):
        iris, centre = browser[468 + 5 * k: 473 + 5 * k], browser[list(contour)].mean(0)
        assert np.ptp(iris[:, 0]) > 4, "an iris's edge points are apart"
        assert np.linalg.norm(iris[0] - centre) > 0.2, "the iris is the model's, not the contour's centre"
