"""/metrics, /health and /ready: figures that follow what happens in the rooms (real sockets, the live server
under gunicorn in prometheus_client's multiprocess mode), and alert rules checked with promtool."""
import pathlib
import re
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from run import create_app
from tests.wsclient import MeetingClient
from wire import posedata
from wire import protocol as p

RULES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "monitoring"


def scrape(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}"""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_and_readiness_without_the_ai_host(client):
    assert client.get("/health").json["status"] == "ok"
    r = client.get("/ready")
    assert r.status_code == 200 and r.json["ready"] and r.json["checks"] == {"accepting": True, "models": "off"}
    client.application.extensions["avatar"].draining = True
    r = client.get("/ready")
    assert r.status_code == 503 and r.json["waiting_for"] == ["accepting"]


@pytest.mark.slow                                         # loads the voice activity model and the voice
def test_readiness_waits_for_the_models_until_they_load():
    app = create_app({"TESTING": True, "HOST_ENABLED": True, "LLM_GGUF": "/nonexistent/model.gguf"})
    client = app.test_client()
    deadline = time.monotonic() + 120
    while (r := client.get("/ready")).json["checks"]["models"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert r.status_code == 503 and r.json["waiting_for"] == ["models"]
    assert r.json["checks"]["models"].startswith("failed:") and "model.gguf" in r.json["checks"]["models"]


def test_metrics_in_one_process_need_no_server(client):
    client.post("/api/meeting/create", json={"user_id": "a", "room_id": "m1", "host": False})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    samples = scrape(r.text)
    assert value(samples, "avatar_rooms") == 1
    assert ("avatar_metrics_sampled_timestamp_seconds", ()) in samples


def scrape_server(server) -> dict:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        return scrape(r.read().decode())


def test_the_live_servers_metrics_follow_the_room(live_server):
    room = f"mon-{uuid.uuid4().hex[:6]}"
    live_server.api("POST", "/api/meeting/create", {"user_id": "o", "room_id": room, "host": False})
    before = scrape_server(live_server)
    a, b = MeetingClient(live_server, room), MeetingClient(live_server, room)
    try:
        for seq in range(3):                                  # within the rate limit's burst
            a.send(p.Pose(posedata.encode_key(posedata.quantize({"yaw": 0.1}, 8), 8, 1, seq)))
            b.expect(p.Pose)
        a.send(b"\xc1\xc1")                                   # not msgpack
        assert a.expect(p.Error).code == "malformed"
        intruder = MeetingClient(live_server, room, join=False).open()
        intruder.send(p.Join("forged"))
        assert intruder.close_code() == p.CloseCode.BAD_TOKEN
        after = scrape_server(live_server)
    finally:
        a.close()
        b.close()

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert grew("avatar_messages_in_total", kind="pose") >= 3
    assert 10 < grew("avatar_pose_bytes_in_total") / grew("avatar_messages_in_total", kind="pose") < 40
    assert grew("avatar_messages_out_total") >= 3
    assert grew("avatar_dropped_total", reason="bad_message") == 1
    assert grew("avatar_channel_closes_total", code="4003") == 1
    assert value(after, "avatar_participants", transport="websocket", fps="30") >= 2
    assert value(after, "avatar_rooms") >= 1


def test_the_alert_rules_hold_and_fire_as_their_tests_say():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/setup.sh installs Debian's prometheus package")
    check = subprocess.run([promtool, "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", str(RULES / "alerts_test.yml")], capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_metric_the_alerts_use_is_exported(client):
    exported = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    rules = (RULES / "alerts.yml").read_text()
    used = {re.sub(r"_(total|bucket)$", "", m) for m in re.findall(r"\b(avatar_[a-z_]+)", rules)}
    assert used and used <= exported, used - exported
