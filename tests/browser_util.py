"""Helpers for the real-browser tests: headless Chromium drivers, the fake camera and microphone, waiting on page
state, opening a meeting."""
from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMEDRIVER = pathlib.Path("/usr/bin/chromedriver")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"
CONNECTED = "return !!(window.avatarMeeting && window.avatarMeeting.state.connected)"

BASE_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--window-size=1280,900",
             # two browsers on one machine: neither may throttle its timers while the other has "focus"
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
             "--disable-backgrounding-occluded-windows")
# Headless Chromium here has no GPU: WebGL is ANGLE on SwiftShader (Vulkan). This Chromium still falls back to it
# under --disable-gpu by itself; newer ones want the flag, which is harmless where it is not needed.
WEBGL_ARGS = ("--enable-unsafe-swiftshader",)


@contextlib.contextmanager
def chromium(lang: str = "en-US", fake_video: pathlib.Path | None = None,
             fake_audio: pathlib.Path | None = None, autoplay: bool = True, extra_args: tuple = ()) -> Iterator:
    """A headless Chromium driver with its own profile; `fake_video` (.y4m) becomes its camera, `fake_audio`
    (.wav, played in a loop) its microphone. With `autoplay` audio plays without a click first."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="avatar-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in BASE_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--lang={lang}")
    for arg in extra_args:
        options.add_argument(arg)
    if autoplay:
        options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    if fake_video is not None or fake_audio is not None:
        options.add_argument("--use-fake-device-for-media-stream")
        options.add_argument("--use-fake-ui-for-media-stream")
    if fake_video is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={fake_video}")
    if fake_audio is not None:
        options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def make_face_video(dest: pathlib.Path) -> pathlib.Path:
    """A short .y4m of scikit-image's astronaut photo (a real face), letterboxed to 640x480."""
    import skimage.data

    png = pathlib.Path(skimage.data.__file__).parent / "astronaut.png"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-loop", "1", "-i", str(png), "-t", "1",
                    "-r", "10", "-vf", "scale=480:480,pad=640:480:80:0", "-pix_fmt", "yuv420p", str(dest)],
                   check=True, timeout=60)
    return dest


def make_speech_wav(dest: pathlib.Path, text: str, voice: str = "en-us") -> pathlib.Path:
    """`text` spoken by espeak-ng with a second of silence before and three after, 48 kHz mono."""
    raw = dest.with_name(dest.stem + "-raw.wav")
    subprocess.run([ESPEAK, "-v", voice, "-w", str(raw), text], check=True, timeout=60, capture_output=True)
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw),
                    "-af", "adelay=1000:all=1,apad=pad_dur=3", "-ar", "48000", "-ac", "1", str(dest)],
                   check=True, timeout=60)
    raw.unlink()
    return dest


def new_room_id(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_meeting(driver, server, room_id: str, name: str) -> int:
    """Opens the meeting page directly (the name in the query) and returns this participant's slot."""
    driver.get(f"{server}/meeting/{room_id}?name={name}")
    wait_for(driver, CONNECTED, 20, f"{name} connected")
    return meeting_state(driver)["mySlot"]


def wait_for(driver, script: str, timeout: float = 20, what: str = "", *args):
    """Runs `script` (a JS function body returning a value) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = driver.execute_script(script, *args)
        if last:
            return last
        time.sleep(0.1)
    logs = browser_log(driver)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or script!r}; last={last!r}\n{logs}")


def wait_until(check: Callable[[], object], timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def browser_log(driver) -> str:
    try:
        return "\n".join(f"  [{e['level']}] {e['message']}" for e in driver.get_log("browser"))
    except Exception:  # noqa: BLE001 - logs are a debugging aid only
        return ""


def meeting_state(driver) -> dict:
    return driver.execute_script("return window.avatarMeeting ? JSON.parse(JSON.stringify("
                                 "{...window.avatarMeeting.state, jitsi: undefined})) : null")


def canvas_png(driver, slot: int) -> str:
    """The avatar canvas of participant `slot` as a data URL."""
    return driver.execute_script(
        "const c = document.querySelector(`#avatar-grid canvas[data-slot='${arguments[0]}']`);"
        "return c ? c.toDataURL('image/png') : null;", slot)
