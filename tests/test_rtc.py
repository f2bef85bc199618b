"""WebRTC data channels (aiortc peers in this process) against a live server: into the same rooms as
WebSocket participants, poses on the unordered channel and bundled, every bad input refused clearly with the
others undisturbed, and every peer connection freed when it ends."""
import time
import uuid

import msgpack
import pytest

from tests.minting import mint
from tests.rtcclient import RtcClient
from tests.wsclient import MeetingClient
from wire import posedata
from wire import protocol as p

C = p.CloseCode


@pytest.fixture(scope="module")
def server(live_server_factory):
    return live_server_factory({"RTC_OPEN_TIMEOUT": 2, "JOIN_TIMEOUT": 2})


def new_room(server, size: int = 16) -> str:
    room_id = f"rtc-{uuid.uuid4().hex[:8]}"
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id, "host": False,
                                                              "max_participants": size})
    assert status == 201, body
    return room_id


def key_frame(yaw: float, seq: int = 0) -> bytes:
    return posedata.encode_key(posedata.quantize({"yaw": yaw}, 8), 8, 1, seq)


def stats(server) -> dict:
    return server.api("GET", "/api/stats")[1]["rtc"]


def test_webrtc_and_websocket_participants_see_each_other(server):
    room_id = new_room(server)
    alice, bob = RtcClient(server, room_id, "alice", "Alice"), MeetingClient(server, room_id, "bob")
    try:
        alice.send(p.Pose(key_frame(0.25)))
        got = bob.expect(p.Pose, where=lambda m: m.slot == alice.slot)
        assert posedata.decode(got.data)[1] == posedata.quantize({"yaw": 0.25}, 8)
        bob.send(p.Pose(key_frame(-0.5)))
        assert alice.expect(p.Pose, where=lambda m: m.slot == bob.slot).data == key_frame(-0.5)
        bob.send(p.Chat("hello over the WebSocket"))
        assert alice.expect(p.Chat).text == "hello over the WebSocket"
        alice.send(p.Chat("hello over WebRTC"))
        assert bob.expect(p.Chat).text == "hello over WebRTC"
        info = server.api("GET", f"/api/meeting/{room_id}")[1]
        assert {m["user_id"] for m in info["participants"] if m["connected"]} == {"alice", "bob"}
        assert server.api("POST", "/api/meeting/leave", {"room_id": room_id, "user_id": "alice",
                                                         "token": alice.token})[0] == 200
        assert alice.close_code() == C.LEFT                       # the WebSocket's close code, in a BYE
        assert bob.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT).members[0].user_id == "alice"
        assert alice.closed.wait(5), "the server closed the peer connection"
    finally:
        alice.close()
        bob.close()


def test_what_is_due_for_a_receiver_goes_in_one_bundle(server):
    room_id = new_room(server)
    listener = RtcClient(server, room_id, "listener")
    senders = [MeetingClient(server, room_id, f"s{i}") for i in range(6)]
    try:
        listener.drain(0.5)
        raw_before = listener.raw_messages
        for round_ in range(5):
            for i, s in enumerate(senders):
                s.send(p.Pose(key_frame(i / 10, round_)))
            time.sleep(0.2)
        poses = [m for m in listener.drain(1.0) if isinstance(m, p.Pose)]
        assert len(poses) >= 25, len(poses)
        assert listener.raw_messages - raw_before < len(poses) / 2, "pose frames were sent one datagram each"
    finally:
        listener.close()
        for s in senders:
            s.close()


def _post_offer(server, room_id: str, token: str, sdp: str, kind: str = "offer") -> tuple[int, dict]:
    return server.api("POST", f"/api/meeting/{room_id}/rtc", {"token": token, "sdp": sdp, "type": kind})


def _offer(server) -> str:
    """A real browser-like offer (two data channels), from a throwaway aiortc peer."""
    import asyncio

    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("control")
        pc.createDataChannel("pose", ordered=False, maxRetransmits=0)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp
    return asyncio.run(make())


def _join(server, room_id: str, user: str) -> str:
    return server.api("POST", "/api/meeting/join", {"room_id": room_id, "user_id": user})[1]["token"]


BAD_OFFERS = {
    "malformed_sdp": lambda s, room, tok: ("v=0\r\nm=application nonsense\r\n", tok, room, 400, "bad_sdp"),
    "no_data_channel": lambda s, room, tok: (_offer(s).split("m=application")[0], tok, room, 400, "no_data_channel"),
    "not_an_offer": lambda s, room, tok: (_offer(s), tok, room, 400, "bad_request"),
    "token_for_another_room": lambda s, room, tok: (_offer(s), tok, new_room(s), 403, "bad_token"),
    "forged_token": lambda s, room, tok: (_offer(s), mint(room, "x", secret="another-secret-of-at-least-32-bytes"),
                                          room, 403, "bad_token"),
    "expired_token": lambda s, room, tok: (_offer(s), mint(room, "x", exp=int(time.time()) - 1), room, 403,
                                           "bad_token"),
    "unknown_room": lambda s, room, tok: (_offer(s), tok, "no-such-room", 403, "bad_token"),
}


@pytest.mark.parametrize("name", BAD_OFFERS)
def test_bad_offers_get_a_clear_json_error(server, name):
    room_id = new_room(server)
    token = _join(server, room_id, "u1")
    sdp, tok, target, status, code = BAD_OFFERS[name](server, room_id, token)
    got_status, body = _post_offer(server, target, tok, sdp, "answer" if name == "not_an_offer" else "offer")
    assert (got_status, body["error"], body["success"]) == (status, code, False), body
    assert body["message"]


def test_a_used_token_and_a_second_offer_are_refused(server):
    room_id = new_room(server)
    ws = MeetingClient(server, room_id, "ws-user")
    status, body = _post_offer(server, room_id, ws.token, _offer(server))         # spent on the WebSocket
    assert (status, body["error"]) == (403, "bad_token") and "already used" in body["message"]
    rtc = RtcClient(server, room_id, "rtc-user")
    status, body = _post_offer(server, room_id, rtc.token, _offer(server))
    assert (status, body["error"]) == (403, "bad_token")
    status, body = _post_offer(server, room_id, mint(room_id, "rtc-user"), _offer(server))   # a new token, same user
    assert (status, body["error"]) == (409, "user_already_in_room")
    rtc.send(p.Chat("still fine"))
    assert ws.expect(p.Chat).text == "still fine"
    ws.close()
    rtc.close()


def test_bad_messages_on_either_channel(server):
    room_id = new_room(server)
    good, watcher = RtcClient(server, room_id, "good"), MeetingClient(server, room_id, "watcher")
    try:
        bad = RtcClient(server, room_id, "bad")
        bad.send(b"\xc1\xc1")                                         # not msgpack: an ERROR, the channel stays
        assert bad.expect(p.Error).code == "malformed"
        bad.send(msgpack.packb([1, 3, "x" * 5000]))                 # over 4096 bytes
        assert bad.close_code() == C.TOO_BIG
        watcher.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT)
        texter = RtcClient(server, room_id, "texter")
        texter.send("a text message")
        assert texter.close_code() == C.UNSUPPORTED_DATA
        bad_pose = RtcClient(server, room_id, "badpose")
        bad_pose.send(p.Pose(b"\x81\x00\x01"))                        # a POSE payload of the wrong size
        assert bad_pose.expect(p.Error).code == "invalid_field"
        good.send(p.Pose(key_frame(0.1)))                            # the others are undisturbed
        assert watcher.expect(p.Pose, where=lambda m: m.slot == good.slot)
    finally:
        for client in (good, watcher):
            client.close()


def test_no_join_and_channels_that_never_open_are_closed(server):
    room_id = new_room(server)
    silent = RtcClient(server, room_id, "silent", join=False)
    assert silent.close_code(timeout=6) == C.JOIN_TIMEOUT
    assert silent.closed.wait(5)
    before = stats(server)["peers"]
    token = _join(server, room_id, "half")
    status, _ = _post_offer(server, room_id, token, _offer(server))   # answered, then nobody connects
    assert status == 200
    deadline = time.monotonic() + 10
    while stats(server)["peers"] > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stats(server)["peers"] <= before, "the never-opened peer was freed"
    silent.close()


def test_a_peer_that_vanishes_is_freed(server):
    """Its consent checks fail (about 30 s in aiortc): it leaves the room like a closed socket."""
    room_id = new_room(server)
    ghost, other = RtcClient(server, room_id, "ghost"), MeetingClient(server, room_id, "other")
    ghost.vanish()
    left = other.expect(p.PresenceMsg, timeout=60, where=lambda m: m.event == p.Presence.LEFT)
    assert left.members[0].user_id == "ghost"
    ghost.close()
    other.close()


def test_turned_off_it_is_a_json_404(client):
    from run import create_app
    app = create_app({"TESTING": True, "RTC_ENABLED": False})
    c = app.test_client()
    c.post("/api/meeting/create", json={"user_id": "a", "room_id": "r1", "host": False})
    join = c.post("/api/meeting/join", json={"room_id": "r1", "user_id": "b"}).get_json()
    assert join["rtc"] is None
    got = c.post("/api/meeting/r1/rtc", json={"token": join["token"], "sdp": "v=0", "type": "offer"})
    assert got.status_code == 404 and got.get_json()["error"] == "rtc_disabled"
