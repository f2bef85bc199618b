"""The meeting page in real headless Chromium against the live server: two participants see each other's
avatars move, the page's JavaScript codec matches the golden bytes, the fake camera drives a face through
MediaPipe, Jitsi is embedded when configured, and the page speaks Chinese to a zh-CN browser."""
from __future__ import annotations

import http.server
import json
import pathlib
import threading
import time

import pytest

from tests.browser_util import (
    CHROMIUM,
    CONNECTED,
    canvas_png,
    chromium,
    make_face_video,
    meeting_state,
    new_room_id,
    open_meeting,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed: no browser to test with")

GOLDEN = pathlib.Path(__file__).with_name("golden") / "protocol.json"
POSE_A = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "mouth_open": 0.0, "smile": 0.0}
POSE_B = {"yaw": 0.7, "pitch": 0.2, "roll": 0.3, "mouth_open": 0.9, "mouth_wide": 0.3, "eye_l": 0.0, "smile": 0.8,
          "brow_r": 0.9, "jaw_open": 0.6}


def close_to(pose: dict | None, expected: dict, tol: float = 0.02) -> bool:
    return bool(pose) and all(abs(pose[k] - v) <= tol for k, v in expected.items())


def settled_canvas(driver, slot: int, timeout: float = 10) -> str:
    """The canvas of `slot` once two reads 200 ms apart are the same image (the easing has finished)."""
    deadline = time.monotonic() + timeout
    last = canvas_png(driver, slot)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = canvas_png(driver, slot)
        if now and now == last:
            return now
        last = now
    raise AssertionError(f"the canvas of slot {slot} never stopped changing")


def drive_and_capture(sender, receiver, sender_slot: int, pose: dict) -> str:
    """Sets the sender's pose, waits until the receiver has it, returns the receiver's settled canvas."""
    sender.execute_script("window.avatarMeeting.setManualPose(arguments[0])", pose)
    wait_until(lambda: close_to(meeting_state(receiver)["lastPoseBySlot"].get(str(sender_slot)), pose),
               10, f"slot {sender_slot}'s pose {pose} to arrive")
    return settled_canvas(receiver, sender_slot)


@pytest.fixture(scope="module")
def pair(live_server):
    """Alice creates a room on the start page, Bob joins it by its id on the start page."""
    with chromium() as alice, chromium() as bob:
        alice.get(f"{live_server}/")
        alice.find_element("id", "display-name").send_keys("Alice")
        alice.find_element("id", "create").click()
        wait_for(alice, CONNECTED, 20, "Alice connected")
        room_id = meeting_state(alice)["roomId"]
        assert alice.current_url.endswith(f"/meeting/{room_id}")

        bob.get(f"{live_server}/")
        bob.find_element("id", "display-name").send_keys("Bob")
        bob.find_element("id", "room-id").send_keys(room_id)
        bob.find_element("id", "join").click()
        wait_for(bob, CONNECTED, 20, "Bob connected")
        a, b = meeting_state(alice)["mySlot"], meeting_state(bob)["mySlot"]
        wait_until(lambda: str(b) in meeting_state(alice)["participants"], 10, "Alice to see Bob")
        yield {"alice": alice, "bob": bob, "room_id": room_id, "a": a, "b": b, "server": live_server}


def test_each_page_draws_the_other_participant_moving(pair):
    alice, bob, a, b = pair["alice"], pair["bob"], pair["a"], pair["b"]
    assert a != b
    # Bob's face on Alice's page follows Bob's pose, and the same pose draws the same picture again.
    bob_still = drive_and_capture(bob, alice, b, POSE_A)
    bob_moved = drive_and_capture(bob, alice, b, POSE_B)
    assert bob_moved != bob_still
    assert drive_and_capture(bob, alice, b, POSE_A) == bob_still
    # And the other way round.
    alice_still = drive_and_capture(alice, bob, a, POSE_A)
    alice_moved = drive_and_capture(alice, bob, a, dict(POSE_B, yaw=-0.7))
    assert alice_moved != alice_still
    for driver, other in ((alice, b), (bob, a)):
        state = meeting_state(driver)
        assert state["framesReceivedBySlot"][str(other)] > 10
        assert state["bytesReceived"] > 500
        assert {m["name"] for m in state["participants"].values()} == {"Alice", "Bob"}


def test_stats_participants_and_chat(pair):
    alice, bob = pair["alice"], pair["bob"]
    wait_for(alice, "return document.getElementById('stat-received').textContent !== '0 B/s'", 5, "a byte rate")
    assert alice.find_element("id", "stat-tier").text == "0 · 30 fps · 8 bits"
    names = [li.text for li in alice.find_elements("css selector", "#participants li")]
    assert any(n.startswith("Alice") for n in names) and any(n.startswith("Bob") for n in names)

    alice.find_element("id", "chat-input").send_keys("Hello, 大家好")
    alice.find_element("css selector", "#chat-form button").click()
    line = wait_for(bob, "const li = [...document.querySelectorAll('#chat-log li:not(.system)')].pop();"
                         "return li && li.textContent", 10, "the chat line on Bob's page")
    assert "Alice" in line and "Hello, 大家好" in line
    assert "Hello, 大家好" in alice.find_element("id", "chat-log").text


def test_without_jitsi_the_page_says_video_is_not_configured(pair):
    note = pair["alice"].find_element("id", "video-note").text
    assert "Video call not configured" in note
    assert not pair["alice"].find_elements("css selector", "script[src*='external_api']")


def test_screenshot_of_two_participants(pair, tmp_path):
    pair["alice"].execute_script("window.avatarMeeting.clearManualPose()")
    drive_and_capture(pair["bob"], pair["alice"], pair["b"], {"smile": 0.6, "mouth_open": 0.3})   # Bob's face drawn
    path = tmp_path / "meeting.png"
    assert pair["alice"].save_screenshot(str(path))
    assert path.stat().st_size > 10_000


# --- the JavaScript codec against tests/golden/protocol.json ---------------------------------------

CODEC_SCRIPT = """
const [golden, done] = arguments;
import('/static/js/protocol.js').then(async (P) => {
  const { PoseSender, PoseReceiver } = await import('/static/js/posestream.js');
  const hex = (u) => Array.from(u, (b) => b.toString(16).padStart(2, '0')).join('');
  const bytes = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
  const plain = (v) => v instanceof Uint8Array ? { $bin: hex(v) } : Array.isArray(v) ? v.map(plain)
    : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) : v;
  const refuses = (fn) => { try { fn(); return 'accepted'; } catch (e) { return e.name; } };
  const out = { messages: {}, poses: [], refused: {} };
  for (const m of golden.messages) {
    const decoded = m.direction === 'server' ? P.decodeServer(bytes(m.hex)) : P.decodeClient(bytes(m.hex));
    const fields = plain(decoded);
    const encoded = hex(P.encodeMessage(decoded));
    delete fields.type;
    out.messages[m.name] = { name: decoded.name, fields, encoded };
  }
  out.clientHelpers = { join: hex(P.join('eyJyIjoiZGVtbyJ9.sig')), chat: hex(P.chat('Hello, 大家好')),
    pose: hex(P.pose(bytes(golden.pose_payloads[0].hex))), audio: hex(P.audio(513, bytes('fc0102030405'))),
    audioEnd: hex(P.audioEnd()), audioWraps: P.decodeClient(P.audio(65536 + 7, bytes('fc'))).seq };
  for (const c of golden.pose_payloads) {
    const q = P.quantize(c.values, c.bits);
    const enc = c.kind === 'key' ? P.encodeKey(q, c.bits, c.key_id, c.seq)
      : P.encodeDelta(q, c.key_q, c.bits, c.key_id, c.seq);
    const dec = P.decodePose(bytes(c.hex), c.key_q || null);
    out.poses.push({ q, hex: hex(enc), decodedQ: dec.q, head: dec.head,
      roundTrip: P.quantize(P.dequantize(dec.q, c.bits), c.bits) });
  }
  out.unbundled = P.unbundle(bytes(golden.messages.find((m) => m.name === 'bundle').hex)).map((m) => m.name);
  out.unbundledSingle = P.unbundle(bytes(golden.messages.find((m) => m.name === 'tier').hex)).map((m) => m.name);
  const key = golden.messages.find((m) => m.name === 'pose_server').hex;
  out.refused = {
    truncated: refuses(() => P.decodeServer(bytes(key.slice(0, -2)))),
    trailing: refuses(() => P.decodeServer(bytes(key + '00'))),
    text: refuses(() => P.decodeServer('hello')),
    version2: refuses(() => P.decodeServer(bytes('94020102' + '00'))),
    clientSendsTier: refuses(() => P.decodeClient(bytes(golden.messages.find((m) => m.name === 'tier').hex))),
    badPoseLength: refuses(() => P.decodeServer(bytes('940101c4028307' + '02'))),
    nan: refuses(() => P.quantize({ yaw: NaN }, 8)),
    emptyAudio: refuses(() => P.decodeServer(P.encodeMessage(
      { type: P.MsgType.AUDIO, seq: 1, data: new Uint8Array(0), slot: 0, t_ms: 0 }))),
    audioEndReason2: refuses(() => P.decodeServer(bytes('9401090200'))),
    unknownHostState: refuses(() => P.decodeServer(P.encodeMessage(
      { type: P.MsgType.HOST_STATUS, slot: 0, state: 'napping', detail: '' }))),
    clientSendsHostStatus: refuses(() => P.decodeClient(bytes(golden.messages.find((m) => m.name === 'host_status').hex))),
    audioWithoutTime: refuses(() => P.decodeServer(bytes('95010807c406fc010203040500'))),
  };
  const sender = new PoseSender(8, 3);
  const frames = [0, 1, 2, 3].map((i) => sender.next({ yaw: i / 10 }, i * 100));
  const receiver = new PoseReceiver();
  out.stream = {
    keyFlags: frames.map((f) => (f[0] & 0x80) !== 0),
    unknownDelta: receiver.receive(5, frames[1]),
    afterKey: receiver.receive(5, frames[0]).yaw,
    delta: receiver.receive(5, frames[1]).yaw,
  };
  out.stream.secondKey = (sender.next({ yaw: 0 }, 1500)[0] & 0x80) !== 0;   // 1 s after the last key frame
  sender.setTier(3, 6);
  out.stream.newBitsKey = (sender.next({ yaw: 0 }, 1600)[0] & 0x80) !== 0;
  const mover = new PoseSender(8, 30);
  const everyField = (k) => Object.fromEntries(P.FIELDS.map(([n, lo, hi], i) => [n, lo + (hi - lo) * ((i + 7 * k) % 17) / 17]));
  out.stream.allMovedKeys = [0, 1, 2].map((k) => (mover.next(everyField(k), 10 * k)[0] & 0x80) !== 0);
  const still = mover.next(everyField(2), 40);
  out.stream.still = { key: (still[0] & 0x80) !== 0, length: still.length, keySize: P.keySize(8) };
  done(out);
}).catch((err) => done({ error: String(err && err.stack || err) }));
"""


# The Python message classes whose JavaScript name is not simply their upper-cased name.
JS_NAMES = {"PresenceMsg": "PRESENCE", "AudioStop": "AUDIO_END", "HostStatus": "HOST_STATUS"}


def test_javascript_codec_matches_the_golden_bytes(pair):
    golden = json.loads(GOLDEN.read_text())
    out = pair["alice"].execute_async_script(CODEC_SCRIPT, golden)
    assert "error" not in out, out.get("error")
    for m in golden["messages"]:
        got = out["messages"][m["name"]]
        expected_fields = {k: v for k, v in m["fields"].items() if v is not None}
        assert got["name"] == JS_NAMES.get(m["type"], m["type"].upper()), m["name"]
        assert {k: v for k, v in got["fields"].items() if k != "name"} == expected_fields, m["name"]
        assert got["encoded"] == m["hex"], m["name"]
    by_name = {m["name"]: m["hex"] for m in golden["messages"]}
    assert out["clientHelpers"] == {"join": by_name["join"], "chat": by_name["chat_client"], "pose": by_name["pose_client"],
                                    "audio": by_name["audio_client"], "audioEnd": by_name["audio_end_client"],
                                    "audioWraps": 7}
    for case, got in zip(golden["pose_payloads"], out["poses"], strict=True):
        assert got["q"] == case["q"] and got["hex"] == case["hex"], case
        assert got["decodedQ"] == case["q"] and got["roundTrip"] == case["q"], case
        assert got["head"] == {"key": case["kind"] == "key", "bits": case["bits"], "keyId": case["key_id"],
                               "seq": case["seq"]}
    assert set(out["refused"]) == {"truncated", "trailing", "text", "version2", "clientSendsTier", "badPoseLength", "nan",
                                   "emptyAudio", "audioEndReason2", "unknownHostState", "clientSendsHostStatus",
                                   "audioWithoutTime"}
    assert set(out["refused"].values()) == {"ProtocolError"}, out["refused"]
    assert out["unbundled"] == ["POSE", "TIER"] and out["unbundledSingle"] == ["TIER"]
    stream = out["stream"]
    assert stream["keyFlags"] == [True, False, False, True]       # a key frame every `fps` frames
    assert stream["unknownDelta"] is None                        # a delta before its key frame is ignored
    assert stream["afterKey"] == pytest.approx(0.0, abs=0.01) and stream["delta"] == pytest.approx(0.1, abs=0.01)
    assert stream["secondKey"] is True                           # ... and at least once a second
    assert stream["newBitsKey"] is True                          # a precision change forces a key frame
    assert stream["allMovedKeys"] == [True, True, True]          # a delta as large as a key frame is sent as one
    assert stream["still"] == {"key": False, "length": 5, "keySize": 19}   # nothing moved


# --- capture through Chromium's fake camera ------------------------------------------------------

def test_fake_camera_face_drives_the_pose_others_receive(pair, tmp_path):
    video = make_face_video(tmp_path / "face.y4m")
    bob, b_room = pair["bob"], pair["room_id"]
    with chromium(fake_video=video) as cam:
        slot = open_meeting(cam, pair["server"], b_room, "Camera")
        state = wait_for(cam, "const s = window.avatarMeeting.state;"
                              "return s.capture.status === 'camera' && s.capture.faceFrames >= 5 && s", 60,
                         "MediaPipe to find the face in the fake camera")
        assert state["capture"]["landmarks"] == 478
        before = meeting_state(bob)["framesReceivedBySlot"].get(str(slot), 0)
        wait_until(lambda: meeting_state(bob)["framesReceivedBySlot"].get(str(slot), 0) > before + 10, 10,
                   "Bob to receive the camera's frames")
        received = meeting_state(bob)["lastPoseBySlot"][str(slot)]
        sent = meeting_state(cam)["lastSentPose"]
        # The idle pose keeps the head at x = y = 0; the astronaut's face sits in the upper half of the frame
        # with open eyes and a broad smile, so these values can only have come from the landmarks.
        assert received["y"] > 0.25, received
        assert received["eye_l"] > 0.6 and received["eye_r"] > 0.6, received
        assert received["smile"] > 0.3, received
        assert abs(received["y"] - sent["y"]) < 0.1
        cam.execute_script("window.avatarMeeting.leave()")


# --- Jitsi -----------------------------------------------------------------------------------------

# A real Jitsi Meet cannot run offline here, so a stand-in external_api.js records how the page calls it.
STAND_IN_API = b"""
window.jitsiCalls = [];
window.JitsiMeetExternalAPI = function (domain, options) {
  window.jitsiCalls.push({ domain, roomName: options.roomName, displayName: options.userInfo.displayName,
                           parentId: options.parentNode.id });
  const frame = document.createElement('iframe');
  frame.title = 'Jitsi stand-in';
  options.parentNode.appendChild(frame);
};
"""


@pytest.fixture
def stand_in_jitsi():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(STAND_IN_API)))
            self.end_headers()
            self.wfile.write(STAND_IN_API)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/external_api.js"
    httpd.shutdown()
    httpd.server_close()


def test_jitsi_is_embedded_with_the_room_and_display_name(live_server_factory, stand_in_jitsi):
    server = live_server_factory({"JITSI_DOMAIN": "meet.example.test", "JITSI_SCRIPT_URL": stand_in_jitsi})
    room_id = new_room_id("jitsi")
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id})
    assert status == 201, body
    with chromium() as driver:
        open_meeting(driver, server, room_id, "Carol")
        calls = wait_for(driver, "return window.jitsiCalls && window.jitsiCalls.length && window.jitsiCalls", 10,
                         "JitsiMeetExternalAPI to be constructed")
        assert len(calls) == 1
        assert calls[0]["domain"] == "meet.example.test"
        assert room_id.replace("-", "") in calls[0]["roomName"]
        assert calls[0]["displayName"] == "Carol"
        assert calls[0]["parentId"] == "jitsi"
        assert driver.find_elements("css selector", "#jitsi iframe")
        assert driver.find_element("css selector", f"script[src='{stand_in_jitsi}']")


# --- language and errors ------------------------------------------------------------------------

def test_chinese_browser_gets_chinese_text(live_server):
    with chromium(lang="zh-CN") as driver:
        driver.get(f"{live_server}/")
        wait_for(driver, "return document.documentElement.lang === 'zh-CN'", 10, "the page to pick Chinese")
        assert driver.find_element("tag name", "h1").text == "虚拟形象会议"
        assert driver.find_element("id", "create").text == "创建房间"
        driver.find_element("id", "display-name").send_keys("小明")
        driver.find_element("id", "room-id").send_keys(new_room_id("missing"))
        driver.find_element("id", "join").click()
        wait_for(driver, "return document.getElementById('status').textContent === arguments[0]", 10,
                 "the room-not-found status", "房间不存在。")

        room_id = new_room_id("zh")
        assert live_server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id})[0] == 201
        open_meeting(driver, live_server, room_id, "小明")
        assert driver.find_element("id", "video-note").text.startswith("未配置视频通话")
        assert "参会者" in driver.find_element("tag name", "aside").text
        assert driver.find_element("css selector", ".tile.self figcaption").text == "小明 (你)"


def test_closed_connection_is_shown_and_rejoined(pair, live_server):
    alice, bob = pair["alice"], pair["bob"]
    # The server closes Bob's socket (4014: he "left" through the API): the page says so and offers a rejoin.
    state = meeting_state(bob)
    status, body = live_server.api("POST", "/api/meeting/leave", {"room_id": pair["room_id"],
                                                                  "user_id": state["userId"], "token": state["token"]})
    assert status == 200, body
    text = wait_for(bob, "const s = document.getElementById('status');"
                         "return s.dataset.kind === 'error' && s.textContent", 10, "the closed-connection message")
    assert "4014" in text and "you left the meeting" in text
    assert not meeting_state(bob)["connected"]
    wait_until(lambda: str(pair["b"]) not in meeting_state(alice)["participants"], 10, "Alice to see Bob leave")
    bob.find_element("id", "rejoin").click()
    wait_for(bob, CONNECTED, 10, "Bob connected again")
    pair["b"] = meeting_state(bob)["mySlot"]
    wait_until(lambda: str(pair["b"]) in meeting_state(alice)["participants"], 10, "Alice to see Bob back")

    # A connection lost on the way (here: dropped by the page itself) is rejoined without a click.
    bob.execute_script("window.avatarMeeting.dropConnection(4013)")
    wait_for(bob, "return !window.avatarMeeting.state.connected", 5, "the socket to close")
    wait_for(bob, CONNECTED, 15, "Bob to reconnect by himself")
    pair["b"] = meeting_state(bob)["mySlot"]
    drive_and_capture(bob, alice, pair["b"], POSE_B)


def test_errors_are_shown_in_the_status_line(pair, live_server):
    driver = pair["alice"]
    room_id = new_room_id("full")
    assert live_server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id,
                                                           "max_participants": 2})[0] == 201
    for user_id in ("first", "second"):
        assert live_server.api("POST", "/api/meeting/join", {"room_id": room_id, "user_id": user_id})[0] == 200
    try:
        driver.get(f"{live_server}/meeting/{room_id}?name=Alice")
        status = wait_for(driver, "const s = document.getElementById('status');"
                                  "return s.dataset.kind === 'error' && s.textContent", 10, "the room-full error")
        assert status == "The room is full."
        assert driver.find_element("id", "rejoin").is_displayed()

        driver.get(f"{live_server}/meeting/{new_room_id('gone')}?name=Alice")
        status = wait_for(driver, "const s = document.getElementById('status');"
                                  "return s.dataset.kind === 'error' && s.textContent", 10, "the not-found error")
        assert status == "Room not found."
    finally:
        # Alice's session was replaced by these pages: put her back in the shared room for later tests.
        pair["a"] = open_meeting(driver, live_server, pair["room_id"], "Alice")
