"""The HTTP API: the happy path, and a JSON error (never a 500) for every bad request."""
import pytest

from run import create_app


def test_create_join_info_leave(client):
    r = client.post("/api/meeting/create", json={"user_id": "alice", "room_id": "standup", "max_participants": 5})
    assert r.status_code == 201 and r.json == {"success": True, "room_id": "standup", "max_participants": 5,
                                               "created_by": "alice", "page_url": "/meeting/standup",
                                               "language": "en", "agenda": [], "host": None, "host_avatar": None}
    r = client.post("/api/meeting/join", json={"room_id": "standup", "user_id": "bob", "display_name": " Bob 鲍勃 "})
    assert r.status_code == 200
    join = r.json
    assert join["token"] and join["ws_url"] == "/ws/meeting/standup" and join["display_name"] == "Bob 鲍勃"
    assert join["tier"] == {"index": 0, "fps": 30, "bits": 8} and join["jitsi"] is None
    info = client.get("/api/meeting/standup").json
    assert info["participants"] == [{"user_id": "bob", "display_name": "Bob 鲍勃", "slot": 0, "connected": False,
                                     "is_host": False, "avatar": None}]
    assert client.get("/api/meeting").json["rooms"][0]["room_id"] == "standup"
    r = client.post("/api/meeting/leave", json={"room_id": "standup", "user_id": "bob", "token": "forged"})
    assert r.status_code == 403 and r.json["error"] == "bad_token"
    r = client.post("/api/meeting/leave", json={"room_id": "standup", "user_id": "bob", "token": join["token"]})
    assert r.status_code == 200
    assert client.get("/api/meeting/standup").json["participants"] == []


def test_generated_room_id(client):
    r = client.post("/api/meeting/create", json={"user_id": "alice"})
    assert r.status_code == 201 and len(r.json["room_id"]) >= 6


def test_room_errors(client):
    client.post("/api/meeting/create", json={"user_id": "a", "room_id": "r", "max_participants": 2})
    r = client.post("/api/meeting/create", json={"user_id": "a", "room_id": "r"})
    assert (r.status_code, r.json["error"], r.json["success"]) == (409, "room_exists", False)
    r = client.post("/api/meeting/join", json={"room_id": "nope", "user_id": "a"})
    assert (r.status_code, r.json["error"]) == (404, "room_not_found")
    assert client.post("/api/meeting/join", json={"room_id": "r", "user_id": "a"}).status_code == 200
    r = client.post("/api/meeting/join", json={"room_id": "r", "user_id": "a"})
    assert (r.status_code, r.json["error"]) == (409, "user_already_in_room")
    client.post("/api/meeting/join", json={"room_id": "r", "user_id": "b"})
    r = client.post("/api/meeting/join", json={"room_id": "r", "user_id": "c"})
    assert (r.status_code, r.json["error"]) == (409, "room_full")
    r = client.get("/api/meeting/nope")
    assert (r.status_code, r.json["error"]) == (404, "room_not_found")


BAD_REQUESTS = [
    ("create", "not json", "text/plain"),
    ("create", "{broken", "application/json"),
    ("create", "[1, 2]", "application/json"),
    ("create", {}, None),
    ("create", {"user_id": 5}, None),
    ("create", {"user_id": "a", "room_id": "x" * 65}, None),
    ("create", {"user_id": "a", "room_id": "has space"}, None),
    ("create", {"user_id": "a", "room_id": "../etc"}, None),
    ("create", {"user_id": "a", "max_participants": "16"}, None),
    ("create", {"user_id": "a", "max_participants": 16.5}, None),
    ("create", {"user_id": "a", "max_participants": True}, None),
    ("create", {"user_id": "a", "max_participants": 100}, None),
    ("create", {"user_id": "a", "max_participants": 0}, None),
    ("create", {"user_id": "a", "language": "fr"}, None),
    ("create", {"user_id": "a", "host": "yes"}, None),
    ("create", {"user_id": "a", "agenda": "talk"}, None),
    ("create", {"user_id": "a", "agenda": [{"title": "x"}]}, None),
    ("create", {"user_id": "a", "agenda": [{"title": "", "minutes": 5}]}, None),
    ("create", {"user_id": "a", "agenda": [{"title": "x", "minutes": -1}]}, None),
    ("create", {"user_id": "a", "agenda": [{"title": "x", "minutes": float("nan")}]}, None),
    ("create", {"user_id": "a", "agenda": [{"title": "x", "minutes": 5}] * 21}, None),
    ("join", {"room_id": "r"}, None),
    ("join", {"room_id": "r", "user_id": ["a"]}, None),
    ("join", {"room_id": "r", "user_id": "u" * 200}, None),
    ("join", {"room_id": "r", "user_id": "a", "display_name": ""}, None),
    ("join", {"room_id": "r", "user_id": "a", "display_name": "x" * 65}, None),
    ("join", {"room_id": "r", "user_id": "a", "display_name": "bell\x07"}, None),
    ("join", {"room_id": None, "user_id": "a"}, None),
    ("leave", {"room_id": "r", "user_id": "a"}, None),
]


@pytest.mark.parametrize("action,body,ctype", BAD_REQUESTS)
def test_bad_requests_get_400_json(client, action, body, ctype):
    client.post("/api/meeting/create", json={"user_id": "a", "room_id": "r"})
    if isinstance(body, str):
        r = client.post(f"/api/meeting/{action}", data=body, content_type=ctype)
    else:
        r = client.post(f"/api/meeting/{action}", json=body)
    assert r.status_code == 400, r.json
    assert r.json["success"] is False and r.json["error"] == "bad_request" and r.json["message"]


def test_http_errors_are_json(client):
    r = client.delete("/api/meeting")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"
    r = client.post("/api/meeting/create", data="x" * 20000, content_type="application/json")
    assert r.status_code == 413 and r.json["success"] is False
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_pages(client):
    assert client.get("/").status_code == 200
    assert client.get("/meeting/standup").status_code == 200
    assert client.get("/meeting/bad%20id").status_code == 400


def test_jitsi_settings_reach_the_join_answer():
    app = create_app({"TESTING": True, "JITSI_DOMAIN": "meet.example.org"})
    c = app.test_client()
    c.post("/api/meeting/create", json={"user_id": "a", "room_id": "team-1"})
    jitsi = c.post("/api/meeting/join", json={"room_id": "team-1", "user_id": "a"}).json["jitsi"]
    assert jitsi == {"domain": "meet.example.org", "room_name": "AvatarMeetteam1",
                     "script_url": "https://meet.example.org/external_api.js"}


def test_apps_share_no_state():
    a, b = create_app({"TESTING": True}), create_app({"TESTING": True})
    a.test_client().post("/api/meeting/create", json={"user_id": "x", "room_id": "only-in-a"})
    assert b.test_client().get("/api/meeting/only-in-a").status_code == 404




def test_a_draining_server_refuses_new_rooms_and_joins(client):
    client.post("/api/meeting/create", json={"user_id": "a", "room_id": "d1"})
    client.application.extensions["avatar"].draining = True
    for path, body in (("/api/meeting/create", {"user_id": "a"}), ("/api/meeting/join", {"room_id": "d1", "user_id": "b"}),
                       ("/api/meeting/d1/rtc", {"token": "t", "sdp": "v=0", "type": "offer"})):
        r = client.post(path, json=body)
        assert (r.status_code, r.json["error"]) == (503, "draining"), path
