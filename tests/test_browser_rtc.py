"""The page over WebRTC in real headless Chromium: a WebRTC page and a WebSocket page in one room draw each other
moving; the page falls back to the WebSocket by itself when the server has WebRTC off or when UDP is blocked."""
import contextlib
import shutil
import subprocess
import time

import pytest

from tests.browser_util import CHROMIUM, CONNECTED, chromium, meeting_state, new_room_id, open_meeting, wait_for
from tests.test_browser import POSE_A, POSE_B, drive_and_capture

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed: no browser to test with")


def test_a_webrtc_page_and_a_websocket_page_see_each_other(live_server, tmp_path):
    room_id = new_room_id("rtc")
    assert live_server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room_id, "host": False})[0] == 201
    with chromium() as alice, chromium() as bob:
        a = open_meeting(alice, live_server, room_id, "Alice")
        bob.get(f"{live_server}/meeting/{room_id}?name=Bob&transport=websocket")
        wait_for(bob, CONNECTED, 20, "Bob connected")
        b = meeting_state(bob)["mySlot"]
        assert meeting_state(alice)["transport"] == "webrtc" and meeting_state(bob)["transport"] == "websocket"
        assert alice.find_element("id", "stat-transport").text == "WebRTC"
        assert bob.find_element("id", "stat-transport").text == "WebSocket"
        # Bob's face on Alice's page (it reached her over the unordered data channel) follows Bob's pose …
        still = drive_and_capture(bob, alice, b, POSE_A)
        moved = drive_and_capture(bob, alice, b, POSE_B)
        assert moved != still
        # … and Alice's pose, sent over WebRTC, moves her face on Bob's page.
        assert drive_and_capture(alice, bob, a, dict(POSE_B, yaw=-0.7)) != drive_and_capture(alice, bob, a, POSE_A)
        alice.find_element("id", "chat-input").send_keys("over the control channel")
        alice.find_element("css selector", "#chat-form button").click()
        wait_for(bob, "return document.getElementById('chat-log').textContent.includes('over the control channel')",
                 10, "Alice's chat on Bob's page")
        assert meeting_state(alice)["framesReceivedBySlot"][str(b)] > 10
        assert meeting_state(alice)["tickAligned"] and not meeting_state(bob)["tickAligned"]
        alice.save_screenshot(str(tmp_path / "webrtc-page.png"))
        stats = live_server.api("GET", "/api/stats")[1]["rtc"]
        assert stats["peers"] >= 1 and stats["messages_out"] > 10


def test_with_webrtc_off_the_page_uses_the_websocket(live_server_factory):
    server = live_server_factory({"RTC_ENABLED": 0})
    room_id = new_room_id("nortc")
    server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room_id, "host": False})
    with chromium() as driver:
        open_meeting(driver, server, room_id, "Carol")
        state = meeting_state(driver)
        assert state["transport"] == "websocket" and state["rtcError"] is None


@contextlib.contextmanager
def udp_blocked():
    """Every UDP packet this machine receives is dropped (nftables), as on a network that lets only TCP through."""
    nft = shutil.which("nft")
    if nft is None or subprocess.run([nft, "list", "tables"], capture_output=True).returncode != 0:
        pytest.skip("needs nftables and root to block UDP")
    subprocess.run([nft, "-f", "-"], check=True, text=True, input=(
        "table inet avatar_test_udp {\n chain input {\n type filter hook input priority 0;\n meta l4proto udp drop\n }\n}\n"))
    try:
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", "avatar_test_udp"], check=False)


def test_with_udp_blocked_the_page_falls_back_within_three_seconds(live_server):
    room_id = new_room_id("noudp")
    live_server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room_id, "host": False})
    with chromium() as driver, udp_blocked():
        driver.get(f"{live_server}/meeting/{room_id}?name=Dan")
        t0 = time.monotonic()
        wait_for(driver, CONNECTED, 20, "Dan connected")
        took = time.monotonic() - t0
        state = meeting_state(driver)
    assert state["transport"] == "websocket" and state["rtcError"], state
    assert took < 3.0 + 1.5, f"connected after {took:.1f} s"      # the 3 s WebRTC attempt, then the WebSocket
