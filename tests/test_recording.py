"""Recording a meeting: the file (written, read back, damaged), the API (start and stop by a participant, list,
download, delete, bad input), the export to MP4 through ffmpeg, the replay into another room, and the page's
button and badge."""
from __future__ import annotations

import io
import json
import pathlib
import subprocess
import time
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from meeting.recording import RecordingError, RecordingNotFound, RecordingStore, read
from tests.test_live import new_room, pose_for
from tests.test_say import top_level_boxes
from tests.wsclient import MeetingClient
from wire import protocol as p

# --- the file -------------------------------------------------------------------------------------

def test_a_recording_reads_back_what_was_recorded_with_its_times(tmp_path):
    store = RecordingStore(str(tmp_path), 1 << 20)
    ticks = iter([0.040, 0.100, 0.250, 0.300, 0.400])          # each record, then the close
    recorder = store.start("r1", (p.Member(0, "ann", "Ann", False),), "Ann")
    recorder.clock = lambda: next(ticks)
    recorder._start = 0.0
    messages = [p.relay_pose(pose_for(0, i), 0) for i in range(3)] + [p.encode(p.Chat("hi", 0, 1))]
    for m in messages:
        recorder.record(m)
    info = recorder.close()
    assert info.records == 4 and (tmp_path / f"{info.id}.avrec").exists()
    assert not list(tmp_path.glob("*.part"))
    header, records = read(store.file(info.id))
    assert header["room_id"] == "r1" and header["members"] == [[0, "ann", "Ann", 0]] and header["by"] == "Ann"
    got = list(records)
    assert [m for _, m in got] == messages
    assert [t for t, _ in got] == [40, 100, 250, 300]
    assert [r.id for r in store.all()] == [info.id]
    store.delete(info.id)
    assert store.all() == []
    with pytest.raises(RecordingNotFound):
        store.get(info.id)


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", "x" * 101, ""])
def test_recording_ids_that_are_not_names_are_not_found(tmp_path, name):
    with pytest.raises(RecordingNotFound):
        RecordingStore(str(tmp_path), 1 << 20).file(name)


def test_a_file_that_is_not_a_recording_is_refused(tmp_path):
    path = tmp_path / "x.avrec"
    path.write_bytes(b"not zlib at all" * 10)
    with pytest.raises(RecordingError):
        read(path)


def test_a_recording_stops_growing_at_its_limit(tmp_path):
    recorder = RecordingStore(str(tmp_path), 20000).start("r", (), "A")
    rng = np.random.default_rng(1)
    for _ in range(100):                                    # 100 kB that zlib cannot shrink
        recorder.record(rng.bytes(1000))
    assert recorder.full and recorder.info.records < 100
    recorder.close()


# --- live -----------------------------------------------------------------------------------------

def _recording(server, room: str, token: str, action: str) -> tuple[int, dict]:
    return server.api("POST", f"/api/meeting/{room}/recording", {"token": token, "action": action})


@pytest.fixture
def recording_server(live_server_factory, tmp_path_factory):
    return live_server_factory({"RECORDINGS_DIR": str(tmp_path_factory.mktemp("recordings"))})


def test_a_meeting_is_recorded_listed_downloaded_exported_replayed_and_deleted(recording_server, tmp_path):
    server = recording_server
    room = new_room(server)
    ann, bob = MeetingClient(server, room, "ann", display_name="Ann"), MeetingClient(server, room, "bob")
    try:
        status, body = _recording(server, room, ann.token, "start")
        assert status == 201, body
        for c in (ann, bob):                          # everyone is told, the one who started it too
            assert c.expect(p.Recording).by == "Ann"
        late = MeetingClient(server, room, "late")
        assert late.expect(p.Recording).on                     # a later arrival is told at once
        for seq in range(30):                             # two faces at 25 fps (the tier allows 30)
            ann.send(p.Pose(pose_for(ann.slot, seq)))
            bob.send(p.Pose(pose_for(bob.slot, seq)))
            time.sleep(0.04)
        last = pose_for(ann.slot, 29)
        bob.expect(p.Pose, where=lambda m: m.slot == ann.slot and m.data == last)
        bob.send(p.Chat("for the record"))
        ann.expect(p.Chat)
        late.close()
        ann.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT)
        assert _recording(server, room, ann.token, "start")[0] == 400            # already running
        status, body = _recording(server, room, bob.token, "stop")
        assert status == 200, body
        assert not ann.expect(p.Recording).on
        saved = body["saved"]
        listed = server.api("GET", "/api/recordings")[1]["recordings"]
        assert saved["id"] in [r["id"] for r in listed]
        data = urllib.request.urlopen(f"{server.url}/api/recordings/{saved['id']}", timeout=10).read()
        assert len(data) == saved["bytes"]
        (tmp_path / "r.avrec").write_bytes(data)
        header, records = read(tmp_path / "r.avrec")
        got = [p.decode_server(m) for _, m in records]
        slots = {m.slot for m in got if isinstance(m, p.Pose)}
        assert slots == {ann.slot, bob.slot}
        assert [m.text for m in got if isinstance(m, p.Chat)] == ["for the record"]
        assert any(isinstance(m, p.PresenceMsg) and m.event == p.Presence.LEFT for m in got)
        # MP4: H.264 + AAC, fast start, as long as the recording
        with urllib.request.urlopen(f"{server.url}/api/recordings/{saved['id']}/mp4", timeout=120) as resp:
            assert resp.headers["Content-Type"] == "video/mp4"
            (tmp_path / "r.mp4").write_bytes(resp.read())
        probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
                                           str(tmp_path / "r.mp4")], capture_output=True, check=True).stdout)
        codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
        assert codecs == {"video": "h264", "audio": "aac"}
        assert abs(float(probe["format"]["duration"]) - saved["duration_s"]) < 1.0
        boxes = top_level_boxes(tmp_path / "r.mp4")
        assert boxes.index("moov") < boxes.index("mdat")                # fast start
        frame = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "r.mp4"), "-frames:v", "1", "-f",
                                "image2pipe", "-vcodec", "png", "-"], capture_output=True, check=True).stdout
        pixels = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"), dtype=int)
        assert (pixels.std(axis=(0, 1)) > 10).all()                     # faces drawn, not a blank frame
        # Replay into another room: its stand-ins come in, move and say the chat again.
        other = new_room(server)
        watcher = MeetingClient(server, other, "watcher")
        status, body = server.api("POST", f"/api/recordings/{saved['id']}/replay", {"room_id": other})
        assert status == 202, body
        joined = watcher.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED)
        assert joined.members[0].name.endswith("(replay)")
        watcher.expect(p.Pose, timeout=10)
        assert watcher.expect(p.Chat, timeout=15).text == "for the record"
        watcher.close()
        # Delete: gone from the list and the download
        assert server.api("DELETE", f"/api/recordings/{saved['id']}")[0] == 200
        assert server.api("GET", f"/api/recordings/{saved['id']}/mp4")[0] == 404
        assert saved["id"] not in [r["id"] for r in server.api("GET", "/api/recordings")[1]["recordings"]]
    finally:
        ann.close()
        bob.close()


@pytest.mark.parametrize("case, status, error", [
    ("bad-action", 400, "bad_request"),
    ("token-of-another-room", 403, "bad_token"),
    ("stop-when-not-recording", 400, "bad_request"),
    ("no-such-room", 404, "room_not_found"),
    ("no-such-recording", 404, "recording_not_found"),
    ("replay-of-no-such-recording", 404, "recording_not_found"),
    ("replay-into-no-such-room", 404, "room_not_found"),
])
def test_bad_recording_requests_get_clear_errors(live_server, case, status, error):
    room = new_room(live_server)
    ann, bob = MeetingClient(live_server, room, "ann"), MeetingClient(live_server, room, "bob")
    try:
        if case == "bad-action":
            got = _recording(live_server, room, ann.token, "pause")
        elif case == "token-of-another-room":
            got = _recording(live_server, new_room(live_server), ann.token, "start")
        elif case == "stop-when-not-recording":
            got = _recording(live_server, room, ann.token, "stop")
        elif case == "no-such-room":
            got = _recording(live_server, "no-such-room", ann.token, "start")
        elif case == "no-such-recording":
            got = live_server.api("GET", "/api/recordings/..passwd")
        elif case == "replay-of-no-such-recording":
            got = live_server.api("POST", "/api/recordings/nothing-here/replay", {"room_id": room})
        else:
            got = live_server.api("POST", "/api/recordings/nothing-here/replay", {"room_id": "no-such-room"})
        assert got[0] == status and got[1]["error"] == error, got
        ann.send(p.Chat("still here"))                    # nobody disturbed
        assert bob.expect(p.Chat).text == "still here"
    finally:
        ann.close()
        bob.close()


@pytest.mark.skipif(not pathlib.Path("/usr/bin/chromium").exists(), reason="chromium is not installed")
def test_the_page_shows_everyone_that_the_meeting_is_recorded(recording_server, tmp_path):
    from tests.browser_util import CONNECTED, chromium, wait_for
    server = recording_server
    room = f"rec-{uuid.uuid4().hex[:6]}"
    server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})
    bob = MeetingClient(server, room, "bob", display_name="Bob")
    with chromium() as page:
        page.get(f"{server}/meeting/{room}?name=Pia&transport=websocket")
        wait_for(page, CONNECTED, 20, "the page connected")
        assert not page.find_element("id", "rec-badge").is_displayed()
        assert _recording(server, room, bob.token, "start")[0] == 201
        wait_for(page, "return !document.getElementById('rec-badge').hidden", 10, "the recording badge")
        badge = page.find_element("id", "rec-badge")
        assert badge.text == "● Recording (started by Bob)"
        assert page.find_element("id", "record").text == "Stop recording"
        page.save_screenshot(str(tmp_path / "recording.png"))
        box = badge.rect
        png = Image.open(io.BytesIO(page.get_screenshot_as_png())).convert("RGB")
        px = np.asarray(png.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])), dtype=int)
        red = (px[..., 0] > 180) & (px[..., 1] < 80) & (px[..., 2] < 80)
        assert red.mean() > 0.4, red.mean()                   # a red badge, in sight
        page.find_element("id", "record").click()               # the page stops it
        assert not bob.expect(p.Recording, where=lambda m: not m.on).on
        wait_for(page, "return document.getElementById('rec-badge').hidden", 10, "the badge gone")
        assert page.find_element("id", "record").text == "Record"
    bob.close()
