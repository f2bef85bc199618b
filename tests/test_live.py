"""A live server under gunicorn with real WebSocket clients: fan-out, tiers, rate caps and bad input."""
import itertools
import socket
import time
import uuid

import msgpack
import numpy as np
import pytest

from tests.minting import mint, tampered
from tests.wsclient import MeetingClient
from wire import posedata
from wire import protocol as p

C = p.CloseCode
_rooms = itertools.count()


def new_room(server, size=16) -> str:
    room_id = f"room-{next(_rooms)}-{uuid.uuid4().hex[:6]}"
    status, body = server.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": room_id,
                                                              "max_participants": size})
    assert status == 201, body
    return room_id


def pose_for(slot: int, seq: int = 0) -> bytes:
    return posedata.encode_key(posedata.quantize({"yaw": slot / 20, "mouth_open": 0.5}, 6), 6, slot % 32, seq)


def test_sixteen_participants_receive_each_other_and_never_themselves(live_server):
    room = new_room(live_server)
    clients = [MeetingClient(live_server, room) for _ in range(16)]
    try:
        for c in clients:
            c.send(p.Pose(pose_for(c.slot)))
        for c in clients:
            got = {}
            deadline = time.monotonic() + 10
            while len(got) < 15 and time.monotonic() < deadline:
                msg = c.recv(1.0)
                if isinstance(msg, p.Pose):
                    got[msg.slot] = msg.data
            assert c.slot not in got, "a participant received its own frame"
            assert got == {o.slot: pose_for(o.slot) for o in clients if o is not c}
    finally:
        for c in clients:
            c.close()


def test_tier_changes_with_head_count_and_clients_are_told(live_server):
    room = new_room(live_server)
    clients = [MeetingClient(live_server, room) for _ in range(4)]
    assert clients[-1].expect(p.Tier) == p.Tier(0, 30, 8, 4)
    fifth = MeetingClient(live_server, room)
    for c in clients:
        assert c.expect(p.Tier, where=lambda t: t.count == 5) == p.Tier(1, 20, 7, 5)
    assert fifth.expect(p.Tier).fps == 20
    fifth.close()
    clients[0].expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT)
    assert not any(isinstance(m, p.Tier) for m in clients[1].drain(0.5)), "4 after 5: hysteresis keeps 20 fps"
    assert live_server.api("GET", f"/api/meeting/{room}")[1]["tier"]["fps"] == 20
    clients.pop().close()
    for c in clients:
        assert c.expect(p.Tier, where=lambda t: t.count == 3) == p.Tier(0, 30, 8, 3)
    for c in clients:
        c.close()


def test_a_sender_above_the_tier_rate_is_capped(live_server):
    room = new_room(live_server)
    sender, receiver = MeetingClient(live_server, room), MeetingClient(live_server, room)
    sender.drain(0.2)
    receiver.drain(0.2)
    start = time.monotonic()
    for seq in range(90):                          # 90 frames as fast as possible, far above 30 fps
        sender.send(p.Pose(pose_for(sender.slot, seq)))
    elapsed = time.monotonic() - start
    got = [m for m in receiver.drain(1.0) if isinstance(m, p.Pose)]
    assert 1 <= len(got) <= 30 * elapsed + 3 + 2, f"{len(got)} frames in {elapsed:.2f} s passed the cap"
    sender.close()
    receiver.close()


class Room3:
    """Two well-behaved participants and a third whose socket the test abuses."""

    def __init__(self, server):
        self.server, self.room = server, new_room(server)
        self.a, self.b = MeetingClient(server, self.room), MeetingClient(server, self.room)

    def b_still_receives(self, seq):
        self.b.drain(0.1)
        self.a.send(p.Pose(pose_for(self.a.slot, seq)))
        assert self.b.expect(p.Pose, where=lambda m: m.data == pose_for(self.a.slot, seq)).slot == self.a.slot

    def close(self):
        self.a.close()
        self.b.close()


def _pack(*fields):
    return msgpack.packb(list(fields), use_bin_type=True)


KEY = pose_for(3)
# name -> (what the third socket sends after JOIN, or "before" to send it instead of JOIN; expected outcome)
BAD_INPUT = {
    "text_frame": ("hello", ("close", C.UNSUPPORTED_DATA)),
    "malformed_msgpack": (b"\xc1\xc1", ("error", "malformed")),
    "truncated_msgpack": (_pack(1, 1, KEY)[:-4], ("error", "malformed")),
    "oversized": (_pack(1, 3, "x" * 5000), ("close", C.TOO_BIG)),
    "wrong_version": (_pack(9, 1, KEY), ("close", C.UNSUPPORTED_VERSION)),
    "nan": (_pack(1, 3, float("nan")), ("error", "invalid_field")),
    "bad_pose_payload": (_pack(1, 1, KEY[:-2]), ("error", "invalid_field")),
    "server_message_from_client": (_pack(1, 7, 0, "x"), ("error", "unknown_type")),
    "second_join": (_pack(1, 0, "again"), ("error", "not_allowed")),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_after_join(live_server, name):
    data, (kind, expected) = BAD_INPUT[name]
    room = Room3(live_server)
    bad = MeetingClient(live_server, room.room)
    try:
        bad.drain(0.2)
        bad.send(data)
        if kind == "close":
            assert bad.close_code() == expected
            room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT)
        else:
            assert bad.expect(p.Error).code == expected
            bad.send(p.Pose(pose_for(bad.slot, 77)))        # the connection is still good
            room.b.expect(p.Pose, where=lambda m: m.slot == bad.slot)
        room.b_still_receives(1)
    finally:
        bad.close()
        room.close()


BAD_TOKENS = {
    "wrong_key": lambda room, user, token: mint(room, user, secret="another-secret-of-at-least-32-bytes-00"),
    "alg_none": lambda room, user, token: mint(room, user, alg="none"),
    "alg_hs512": lambda room, user, token: mint(room, user, alg="HS512"),
    "expired": lambda room, user, token: mint(room, user, iat=int(time.time()) - 120, exp=int(time.time()) - 60),
    "not_yet_valid": lambda room, user, token: mint(room, user, nbf=int(time.time()) + 60),
    "wrong_audience": lambda room, user, token: mint(room, user, aud="someone-else"),
    "no_jti": lambda room, user, token: mint(room, user, drop=("jti",)),
    "no_exp": lambda room, user, token: mint(room, user, drop=("exp",)),
    "tampered": lambda room, user, token: tampered(token),
    "not_a_jwt": lambda room, user, token: "-",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused(live_server, name):
    room = Room3(live_server)
    status, body = live_server.api("POST", "/api/meeting/join", {"room_id": room.room, "user_id": f"u-{name}"})
    intruder = MeetingClient(live_server, room.room, join=False).open()
    try:
        intruder.send(p.Join(BAD_TOKENS[name](room.room, f"u-{name}", body["token"])))
        assert intruder.close_code(timeout=6) == C.BAD_TOKEN
        room.b_still_receives(2)
    finally:
        intruder.close()
        room.close()


def test_a_token_minted_by_a_backend_joins_without_the_join_call(live_server):
    room = Room3(live_server)
    token = mint(room.room, "carol", name="Carol K.")
    carol = MeetingClient(live_server, room.room, join=False).open()
    reuse = MeetingClient(live_server, room.room, join=False).open()
    try:
        carol.send(p.Join(token))
        slot = carol.expect(p.Welcome).slot
        joined = room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED
                               and m.members[0].slot == slot).members[0]
        assert joined.name == "Carol K."
        carol.send(p.Pose(pose_for(slot, 9)))
        room.b.expect(p.Pose, where=lambda m: m.slot == slot)
        carol.close()
        room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT)
        reuse.send(p.Join(token))                     # single use: the same token cannot join again
        assert reuse.close_code(timeout=6) == C.BAD_TOKEN
    finally:
        carol.close()
        reuse.close()
        room.close()


def test_a_minted_token_for_a_full_room_closes_with_4010(live_server):
    room_id = new_room(live_server, size=2)
    first, second = MeetingClient(live_server, room_id), MeetingClient(live_server, room_id)
    third = MeetingClient(live_server, room_id, join=False).open()
    try:
        third.send(p.Join(mint(room_id, "third")))
        assert third.close_code(timeout=6) == C.ROOM_FULL
        first.send(p.Pose(pose_for(first.slot, 3)))
        second.expect(p.Pose, where=lambda m: m.slot == first.slot)
    finally:
        for c in (first, second, third):
            c.close()


@pytest.mark.parametrize("name", ["message_before_join", "no_token", "unknown_room", "token_for_other_room",
                                  "reused_token", "duplicate_user", "join_timeout", "text_before_join"])
def test_bad_joins(live_server, name):
    room = Room3(live_server)
    path_room, first = room.room, None
    status, body = live_server.api("POST", "/api/meeting/join", {"room_id": room.room, "user_id": f"u-{name}"})
    token = body["token"]
    expected = C.BAD_TOKEN
    if name == "message_before_join":
        first, expected = p.encode(p.Pose(KEY)), C.NOT_JOINED
    elif name == "text_before_join":
        first, expected = '{"type": "join"}', C.UNSUPPORTED_DATA
    elif name == "no_token":
        first = p.encode(p.Join("-"))
    elif name == "unknown_room":
        path_room, first, expected = "no-such-room", p.encode(p.Join(token)), C.ROOM_NOT_FOUND
    elif name == "token_for_other_room":
        path_room, first = new_room(live_server), p.encode(p.Join(token))
    elif name in ("reused_token", "duplicate_user"):
        holder = MeetingClient(live_server, room.room, join=False).open()
        holder.send(p.Join(token))
        holder.expect(p.Welcome)
        if name == "reused_token":
            first = p.encode(p.Join(token))
        else:                                          # a second, genuine token for the same user
            first, expected = p.encode(p.Join(mint(room.room, f"u-{name}"))), C.DUPLICATE
    elif name == "join_timeout":
        expected = C.JOIN_TIMEOUT
    intruder = MeetingClient(live_server, path_room, join=False).open()
    try:
        if first is not None:
            intruder.send(first)
        assert intruder.close_code(timeout=6) == expected
        room.b_still_receives(2)
    finally:
        intruder.close()
        room.close()


def test_late_joiner_gets_everyones_face_at_once(live_server):
    room = Room3(live_server)
    room.a.send(p.Pose(pose_for(room.a.slot, 5)))
    room.b.expect(p.Pose)
    late = MeetingClient(live_server, room.room)
    assert late.expect(p.Pose).data == pose_for(room.a.slot, 5)
    late.close()
    room.close()


def test_leave_through_the_api_closes_the_channel(live_server):
    room = Room3(live_server)
    status, _ = live_server.api("POST", "/api/meeting/leave", {"room_id": room.room, "user_id": room.b.user_id,
                                                              "token": room.b.token})
    assert status == 200
    assert room.b.close_code() == C.LEFT
    assert room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.LEFT).members[0].slot == room.b.slot
    room.close()


def _stuck_socket(server, room_id: str, user_id: str) -> socket.socket:
    """A participant that joins and then never reads: a raw socket with a tiny receive buffer."""
    status, body = server.api("POST", "/api/meeting/join", {"room_id": room_id, "user_id": user_id})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall((f"GET /ws/meeting/{room_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in sock.recv(1024)
    payload = p.encode(p.Join(body["token"]))
    mask = b"\x01\x02\x03\x04"
    n = len(payload)                                          # a JWT: over 125 bytes, a 16-bit length
    head = bytes((0x82, 0x80 | n)) if n < 126 else bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def test_a_stuck_reader_neither_slows_the_room_nor_loses_ordered_messages(live_server_factory):
    server = live_server_factory({"OUTBOX_LIMIT": 120, "CHAT_RATE": 1000, "CHAT_BURST": 1000})
    room = Room3(server)
    stuck = _stuck_socket(server, room.room, "stuck")
    try:
        room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED)
        room.b.drain(0.2)
        latencies = []
        for seq in range(60):                          # 2 s of poses at 30 fps, with chat in between
            t0 = time.monotonic()
            room.a.send(p.Pose(pose_for(room.a.slot, seq)))
            room.b.expect(p.Pose, where=lambda m, s=seq: m.data == pose_for(room.a.slot, s))
            latencies.append(time.monotonic() - t0)
            room.a.send(p.Chat(f"message {seq} " + "x" * 900))
            time.sleep(1 / 30)
        assert sorted(latencies)[len(latencies) // 2] < 0.05
        room.b.drain(0.5)
        chats = [m.text.split()[1] for m in room.b.received if isinstance(m, p.Chat)]
        assert chats == [str(i) for i in range(60)], "chat lost or reordered"
        for seq in range(60, 400):                     # the stuck reader's ordered queue overflows: it is closed
            room.a.send(p.Chat(f"message {seq} " + "x" * 900))
            time.sleep(0.002)
        left = room.b.expect(p.PresenceMsg, timeout=10, where=lambda m: m.event == p.Presence.LEFT)
        assert left.members[0].user_id == "stuck"
        room.b_still_receives(500)
    finally:
        stuck.close()
        room.close()


def test_chat_flood_is_refused_with_an_error_and_others_are_undisturbed(live_server):
    room = Room3(live_server)
    for i in range(40):
        room.a.send(p.Chat(f"spam {i}"))
    assert room.a.expect(p.Error).code == "rate_limited"
    got = [m for m in room.b.drain(1.0) if isinstance(m, p.Chat)]
    assert 20 <= len(got) < 40
    room.b_still_receives(3)
    room.close()


def test_a_flooding_sender_costs_the_room_nothing(live_server):
    """A participant that writes pose frames as fast as its socket takes them (far above its input budget):
    its excess is dropped unread and its socket is read a little at a time, so a 20 fps face elsewhere in the
    room arrives without gaps and the server is not kept busy."""
    import threading
    room = Room3(live_server)
    flooder = MeetingClient(live_server, room.room, "flooder")
    frame = p.encode(p.Pose(pose_for(flooder.slot)))
    stop, arrivals, sent = threading.Event(), [], []

    def flood():
        try:
            while not stop.is_set():
                for _ in range(200):
                    flooder.ws.send(frame)
                sent.append(200)
        except Exception:  # noqa: BLE001 - its socket may be closed under it at the end
            pass

    def face():
        seq = 0
        while not stop.is_set():
            room.a.send(p.Pose(pose_for(room.a.slot, seq % 100)))
            seq += 1
            stop.wait(0.05)

    flood_before = _flood_drops(live_server)
    threads = [threading.Thread(target=flood, daemon=True), threading.Thread(target=face)]
    for t in threads:
        t.start()
    start = time.monotonic()
    cpu0 = _server_cpu(live_server)
    while time.monotonic() - start < 3:
        msg = room.b.recv(0.5)
        if isinstance(msg, p.Pose) and msg.slot == room.a.slot:
            arrivals.append(time.monotonic())
    cpu = (_server_cpu(live_server) - cpu0) / (time.monotonic() - start)
    stop.set()
    threads[1].join()
    gaps = np.diff(arrivals)
    assert len(arrivals) >= 45 and gaps.max() < 0.25, (len(arrivals), gaps.max())      # 20 fps, no gap
    assert sum(sent) > 5000                             # it did flood
    assert cpu < 0.5, f"the flood kept the server {cpu:.0%} busy"
    assert _flood_drops(live_server) > flood_before      # dropped unread and counted (most is never read: TCP)
    flooder.close()
    room.b_still_receives(7)
    room.close()


def _flood_drops(server) -> float:
    import re
    import urllib.request
    text = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
    found = re.search(r'^avatar_dropped_total\{reason="flood"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _server_cpu(server) -> float:
    """CPU seconds of the server's processes (gunicorn's master and its worker)."""
    import os
    import pathlib
    total = 0.0
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d.name) == server.proc.pid or int(fields[1]) == server.proc.pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def test_a_failing_channel_does_not_stop_the_writer():
    from connect.writer import SocketWriter, WebSocketChannel
    from meeting.outbox import Outbox
    writer = SocketWriter(ping_interval=0)
    (a, a_peer), (b, b_peer) = socket.socketpair(), socket.socketpair()
    broken, healthy = WebSocketChannel(a, writer), WebSocketChannel(b, writer)

    def bug():
        raise RuntimeError("a bug in one channel")
    broken.flush = bug                                  # a fault no real socket shows
    for channel in (broken, healthy):
        outbox = Outbox()
        channel.bind(outbox)
        outbox.put(b"hi")
        channel.notify()
    b_peer.settimeout(2)
    a_peer.settimeout(2)
    assert b_peer.recv(16) == b"\x82\x02hi"              # the writer thread lives on: the other socket is served
    assert a_peer.recv(16) == b"" and broken.closed      # the failed one is shut, so its session ends
    for s in (a, a_peer, b, b_peer):
        s.close()


def test_a_dropped_connection_resumes_its_place_unseen(live_server):
    room = Room3(live_server)
    carol = MeetingClient(live_server, room.room)
    room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED and m.members[0].slot == carol.slot)
    seen = len(room.a.received)
    carol.drop()                                             # no close frame: the network, not carol
    back = MeetingClient(live_server, room.room, join=False).open()
    again = MeetingClient(live_server, room.room, join=False).open()
    try:
        back.send(p.Join(carol.resume))
        welcome = back.expect(p.Welcome)
        assert welcome.slot == carol.slot and welcome.resume not in ("", carol.resume)
        snapshot = back.expect(p.PresenceMsg)
        assert carol.slot in {m.slot for m in snapshot.members}
        back.send(p.Pose(pose_for(carol.slot, 4)))
        room.a.expect(p.Pose, where=lambda m: m.slot == carol.slot)
        assert not any(isinstance(m, p.PresenceMsg) for m in room.a.received[seen:])   # no leave, no join
        again.send(p.Join(carol.resume))                     # a resume token works once
        assert again.close_code() == C.BAD_TOKEN
    finally:
        back.close()
        again.close()
        room.close()


def test_a_place_not_resumed_within_the_grace_period_is_left(live_server_factory):
    server = live_server_factory({"RESUME_GRACE": 1})
    room = Room3(server)
    carol = MeetingClient(server, room.room)
    room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED and m.members[0].slot == carol.slot)
    t0 = time.monotonic()
    carol.drop()
    left = room.a.expect(p.PresenceMsg, timeout=6, where=lambda m: m.event == p.Presence.LEFT)
    assert left.members[0].slot == carol.slot and 0.9 < time.monotonic() - t0 < 4
    room.b_still_receives(3)
    room.close()


def test_a_clean_close_leaves_at_once(live_server):
    room = Room3(live_server)
    carol = MeetingClient(live_server, room.room)
    room.a.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED and m.members[0].slot == carol.slot)
    t0 = time.monotonic()
    carol.close()
    room.a.expect(p.PresenceMsg, timeout=3, where=lambda m: m.event == p.Presence.LEFT)
    assert time.monotonic() - t0 < 1.5
    room.close()
