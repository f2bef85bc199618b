"""Restarts and drops: SIGTERM tells every participant to come back (1012 on the WebSocket, a BYE 1012 over WebRTC)
before the server goes; the page reconnects by itself with backoff and jitter and, without Redis (where a
restart ends the meeting), says plainly that the meeting ended; a page whose connection drops resumes
its place without the others seeing it leave."""
import contextlib
import io
import shutil
import signal
import subprocess
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.browser_util import CHROMIUM, CONNECTED, chromium, meeting_state, open_meeting, wait_for
from tests.conftest import LiveServer
from tests.rtcclient import RtcClient
from tests.wsclient import MeetingClient
from wire import protocol as p

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server():
    """A server of this test's own (it is stopped by the test)."""
    servers = [LiveServer({"RTC_OPEN_TIMEOUT": 3})]
    yield servers
    for server in servers:
        if server.proc.poll() is None:
            server.stop()


def test_sigterm_tells_every_participant_to_come_back(own_server):
    server = own_server[0]
    room = f"term-{uuid.uuid4().hex[:6]}"
    server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})
    ws, rtc = MeetingClient(server, room), RtcClient(server, room, "rtc-user")
    try:
        ws.send(p.Chat("before the restart"))
        assert rtc.expect(p.Chat).text == "before the restart"
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert ws.close_code(timeout=5) == p.CloseCode.RESTARTING
        assert rtc.close_code(timeout=5) == p.CloseCode.RESTARTING
        assert time.monotonic() - t0 < 4
        assert server.proc.wait(timeout=15) == 0
        assert "Traceback" not in server.log_text()
    finally:
        ws.close()
        rtc.close()


def _red_share(png: bytes, box: dict) -> float:
    """The share of the status line's pixels that are the error colour (reddish)."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    px = np.asarray(img.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])), dtype=int)
    red = (px[..., 0] > 150) & (px[..., 1] < 110) & (px[..., 2] < 110)
    return float(red.mean()) if red.size else 0.0


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
def test_the_page_reconnects_and_says_when_the_meeting_ended_with_the_server(own_server, tmp_path):
    server = own_server[0]
    room = f"term-{uuid.uuid4().hex[:6]}"
    server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})
    with chromium() as page:
        open_meeting(page, server, room, "Alice")
        server.proc.send_signal(signal.SIGTERM)
        wait_for(page, "return window.avatarMeeting.state.closeCode === 1012", 10, "the 1012 close")
        wait_for(page, "return window.avatarMeeting.state.reconnects >= 1", 10, "a reconnect attempt")
        assert server.proc.wait(timeout=15) == 0
        # The server comes back on the same port, without Redis: the room is gone, and the page says so.
        own_server.append(LiveServer({"RTC_OPEN_TIMEOUT": 3}, port=server.port))
        wait_for(page, "return document.getElementById('status').textContent.includes('meeting ended')", 40,
                 "the page saying the meeting ended")
        state = meeting_state(page)
        assert not state["connected"] and state["reconnects"] >= 1
        assert page.find_element("id", "status").text == "The meeting ended when the server restarted."
        assert page.find_element("id", "rejoin").is_displayed()
        page.save_screenshot(str(tmp_path / "meeting-ended.png"))
        box = page.execute_script("const r = document.getElementById('status').getBoundingClientRect();"
                                  "return {x: r.x, y: r.y, width: r.width, height: r.height};")
        png = page.get_screenshot_as_png()
        assert _red_share(png, box) > 0.02                                # shown as an error, in red
        dot = page.execute_script("const r = document.querySelector('#participants .dot').getBoundingClientRect();"
                                  "return {x: r.x, y: r.y, width: r.width, height: r.height};")
        px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
        r, g, b = px[int(dot["y"] + dot["height"] / 2), int(dot["x"] + dot["width"] / 2)]
        assert not (g > r + 40 and g > b + 40), (r, g, b)                 # no green "connected" dot any more


@contextlib.contextmanager
def connections_reset(port: int, spare_port: int):
    """Every TCP connection to `port` but the one from `spare_port` is reset (nftables), as when a network
    goes away under a page: no close frame either way."""
    nft = shutil.which("nft")
    if nft is None or subprocess.run([nft, "list", "tables"], capture_output=True).returncode != 0:
        pytest.skip("needs nftables and root to cut connections")
    rule = f"tcp dport {port} tcp sport != {spare_port} reject with tcp reset"
    subprocess.run([nft, "-f", "-"], check=True, text=True, input=(
        "table inet avatar_test_cut {\n chain input {\n type filter hook input priority 0;\n" + rule + "\n }\n}\n"))
    try:
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", "avatar_test_cut"], check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")
def test_a_page_whose_connection_drops_resumes_its_place(live_server):
    room = f"drop-{uuid.uuid4().hex[:6]}"
    live_server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})
    watcher = MeetingClient(live_server, room, "watcher")
    with chromium() as page:
        page.get(f"{live_server}/meeting/{room}?name=Eve&transport=websocket")
        wait_for(page, CONNECTED, 20, "Eve connected")
        slot = meeting_state(page)["mySlot"]
        watcher.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED)
        seen = len(watcher.received)
        with connections_reset(live_server.port, watcher.ws.socket.getsockname()[1]):
            wait_for(page, "return window.avatarMeeting.state.reconnects >= 1", 10, "the page noticing the drop")
            assert meeting_state(page)["closeCode"] == 1006
        wait_for(page, CONNECTED + " && window.avatarMeeting.state.resumed", 20, "the page resumed")
        state = meeting_state(page)
        assert state["mySlot"] == slot and state["transport"] == "websocket"
        page.execute_script("document.getElementById('chat-input').value = 'back again';"
                            "document.querySelector('#chat-form button').click();")
        assert watcher.expect(p.Chat, timeout=5).slot == slot
        assert not any(isinstance(m, p.PresenceMsg) for m in watcher.received[seen:])   # no leave, no join
        info = live_server.api("GET", f"/api/meeting/{room}")[1]
        assert info["count"] == 2 and all(m["connected"] for m in info["participants"])   # Eve once, back in
    watcher.close()
