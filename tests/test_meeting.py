"""The meeting core without a network: tiers, rooms, the manager's errors, outboxes and the rate limit."""
import pytest

from meeting.errors import InvalidRequest, NotInRoom, RoomExists, RoomFull, RoomNotFound, UserAlreadyInRoom
from meeting.manager import MeetingManager, MeetingSettings
from meeting.outbox import Outbox
from meeting.participant import RateLimiter
from meeting.quality import QualityPolicy
from wire import posedata
from wire import protocol as p


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Sink:
    """A transport stand-in that decodes what the outbox hands it (the live tests use real sockets)."""

    def __init__(self):
        self.outbox, self.closed, self.notified = None, None, 0

    def bind(self, outbox):
        self.outbox = outbox

    def notify(self):
        self.notified += 1

    def close(self, code, reason):
        self.closed = code

    def take(self):
        return [p.decode_server(m) for m in self.outbox.drain()]


def test_tiers_follow_head_count():
    policy = QualityPolicy.parse("4:30:8,9:20:7,16:10:6")
    assert [policy.target(n).fps for n in (1, 4, 5, 9, 10, 16, 40)] == [30, 30, 20, 20, 10, 10, 10]
    assert [policy.target(n).bits for n in (4, 9, 16)] == [8, 7, 6]


def test_tier_hysteresis_stops_flapping():
    policy = QualityPolicy.parse("4:30:8,9:20:7,16:10:6", hysteresis=1)
    tier = policy.tier_for(5)
    assert tier.fps == 20
    for count in (4, 5, 4, 5, 4):                      # flapping around the 4/5 boundary
        tier = policy.tier_for(count, tier)
        assert tier.fps == 20
    assert policy.tier_for(3, tier).fps == 30          # one below the limit: step down
    tier = policy.tier_for(12)
    assert policy.tier_for(9, tier).fps == 10 and policy.tier_for(8, tier).fps == 20
    assert policy.tier_for(2, tier).fps == 30          # straight down several tiers


@pytest.mark.parametrize("spec", ["", "4:30", "9:20:7,4:30:8", "a:b:c"])
def test_bad_tier_specs(spec):
    with pytest.raises(ValueError):
        QualityPolicy.parse(spec)


def test_manager_errors():
    m = MeetingManager()
    m.create_room("alice", "r1", max_participants=2)
    with pytest.raises(RoomExists):
        m.create_room("bob", "r1")
    with pytest.raises(RoomNotFound):
        m.join("nope", "bob")
    m.join("r1", "alice")
    with pytest.raises(UserAlreadyInRoom):
        m.join("r1", "alice")
    m.join("r1", "bob")
    with pytest.raises(RoomFull):
        m.join("r1", "carol")
    with pytest.raises(NotInRoom):
        m.leave("r1", "carol")
    m.leave("r1", "bob")
    m.join("r1", "carol")                               # the freed place is taken again
    assert [r.room_id for r in m.rooms()] == ["r1"]


@pytest.mark.parametrize("kwargs", [{"room_id": "bad id"}, {"room_id": "x" * 65}, {"room_id": ""},
                                    {"max_participants": 1}, {"max_participants": 17}, {"created_by": "a b"}])
def test_manager_refuses_bad_arguments(kwargs):
    args = {"created_by": "alice", "room_id": "ok"} | kwargs
    with pytest.raises(InvalidRequest):
        MeetingManager().create_room(**args)


def test_reservations_and_empty_rooms_expire():
    clock = Clock()
    m = MeetingManager(MeetingSettings(reservation_ttl=60, empty_room_ttl=300), clock=clock)
    m.create_room("alice", "r1")
    m.join("r1", "alice")
    clock.t += 61
    room = m.get_room("r1")
    assert room.expire_reservations(60) == ["alice"] and room.size == 0
    clock.t += 301
    assert m.rooms() == []


def test_a_failing_close_listener_does_not_fail_the_request():
    clock = Clock()
    m = MeetingManager(MeetingSettings(empty_room_ttl=300), clock=clock)
    closed = []

    def broken(room_id):
        closed.append(room_id)
        raise RuntimeError("listener bug")
    m.on_close.append(broken)
    m.create_room("alice", "r1")
    m.create_room("alice", "r2")
    clock.t += 301
    room = m.create_room("bob", "r3")                   # sweeps r1 and r2: both closed, both told
    assert sorted(closed) == ["r1", "r2"] and [r.room_id for r in m.rooms()] == [room.room_id]
    with pytest.raises(RoomExists):
        m.create_room("bob", "r3")


def test_fan_out_skips_the_sender_and_greets_late_joiners():
    m = MeetingManager()
    room = m.create_room("alice", "r1")
    sinks = {}
    for user in ("alice", "bob", "carol"):
        _, member = m.join("r1", user)
        sinks[user] = Sink()
        room.attach(user, member.nonce, sinks[user])
    for s in sinks.values():
        s.take()
    alice = room.get("alice")
    key = posedata.encode_key(posedata.quantize({"yaw": 0.5}, 8), 8, 1, 0)
    assert room.relay_pose(alice, key)
    assert sinks["alice"].take() == []
    assert sinks["bob"].take() == [p.Pose(key, alice.slot)] == sinks["carol"].take()
    _, dave = m.join("r1", "dave")
    sinks["dave"] = Sink()
    room.attach("dave", dave.nonce, sinks["dave"])
    got = sinks["dave"].take()
    assert isinstance(got[0], p.Welcome) and p.Pose(key, alice.slot) in got


def test_listeners_hear_a_leavers_microphone_end():
    m = MeetingManager()
    room = m.create_room("alice", "r1")
    heard = []

    class Listener:
        def heard_chat(self, member, chat): heard.append(("chat", member.user_id))
        def heard_audio(self, member, audio): heard.append(("audio", member.user_id))
        def heard_audio_end(self, member): heard.append(("end", member.user_id))
        def members_changed(self, humans): heard.append(("members", humans))
    room.listeners.append(Listener())
    for user in ("alice", "bob"):
        _, member = m.join("r1", user)
        room.attach(user, member.nonce, Sink())
    m.join("r1", "carol")                           # reserved, never connected
    room.hear_audio(room.get("bob"), p.Audio(0, b"\xf8\xff\xfe"))
    heard.clear()
    room.remove("bob")
    room.remove("carol")
    assert heard == [("end", "bob"), ("members", 1), ("members", 1)]


def test_outbox_pose_frames_are_latest_wins_and_keep_key_frames():
    box = Outbox()
    assert box.put_pose(1, b"key1", key=True) is True          # was empty: wake the writer
    assert box.put_pose(1, b"d1", key=False) is False
    box.put_pose(1, b"d2", key=False)                          # replaces d1, keeps the key frame
    box.put_pose(2, b"other", key=False)
    box.put(b"chat")
    assert box.drain() == [b"chat", b"key1", b"d2", b"other"]
    assert box.dropped_poses == 1 and box.drain() == []


def test_outbox_overflow_closes_instead_of_dropping_ordered_messages():
    m = MeetingManager(MeetingSettings(outbox_limit=3))
    room = m.create_room("alice", "r1")
    _, member = m.join("r1", "alice")
    sink = Sink()
    room.attach("alice", member.nonce, sink)                    # welcome, tier, snapshot: 3 queued
    member.send(b"one more")
    assert sink.closed == p.CloseCode.TOO_SLOW


def test_rate_limiter_caps_a_fast_sender():
    clock = Clock()
    limiter = RateLimiter(10, burst=3, clock=clock)
    sent = 0
    for _ in range(100):                                       # 100 frames in one second
        sent += limiter.allow()
        clock.t += 0.01
    assert 10 <= sent <= 13


def test_a_stale_channel_does_not_remove_a_newer_reservation():
    manager = MeetingManager()
    room = manager.create_room("owner", "r")
    old = room.reserve("ann", "Ann")
    room.attach("ann", old.nonce, Sink())
    room.remove("ann")                                   # left (the API), then joined again
    new = room.reserve("ann", "Ann")
    with pytest.raises(NotInRoom):
        room.remove("ann", only=old)                     # the old channel's late clean-up
    assert room.get("ann") is new
    assert room.remove("ann", only=new) is new


def test_outbox_drains_ordered_and_poses_apart():
    box = Outbox()
    assert box.put(b"chat") and not box.put_pose(1, b"pose", True)
    assert box.drain(ordered=False) == [b"pose"]
    assert not box.put(b"more")                          # not empty yet: no new wake-up needed
    assert box.drain(poses=False) == [b"chat", b"more"] and box.drain() == []
    assert box.put_pose(2, b"p2", False)                 # empty again: the next one wakes the transport


def _room_of_three(clock=None):
    m = MeetingManager(clock=clock) if clock else MeetingManager()
    room = m.create_room("alice", "r1")
    sinks = {}
    for user in ("alice", "bob", "carol"):
        _, member = m.join("r1", user)
        sinks[user] = Sink()
        room.attach(user, member.nonce, sinks[user], resume=f"resume-{user}", next_nonce=f"n-{user}")
    for s in sinks.values():
        s.take()
    return room, sinks


def test_a_dropped_participant_resumes_without_the_others_noticing():
    room, sinks = _room_of_three()
    bob, alice = room.get("bob"), room.get("alice")
    assert room.detach(bob) and not room.detach(bob)           # once
    key = posedata.encode_key(posedata.quantize({"yaw": 0.2}, 8), 8, 1, 0)
    room.relay_pose(alice, key)                                 # while bob is away: latest-wins, kept for him
    room.post_chat(alice, "did you hear me?")
    assert [type(m) for m in sinks["carol"].take()] == [p.Chat, p.Pose]   # no PRESENCE: nobody left
    assert room.get("bob") is bob and bob.away and not bob.connected
    assert [m.user_id for m in room.members()] == ["alice", "bob", "carol"]
    new = Sink()
    with pytest.raises(NotInRoom):
        room.attach("bob", "the-old-join-nonce", new)            # only its resume token's id opens its place
    room.attach("bob", "n-bob", new, resume="resume-2", next_nonce="n-bob-2")
    assert new.notified                     # the pose queued while away must not leave the writer unaware
    got = new.take()
    assert got[0] == p.Welcome(bob.slot, "r1", "resume-2") and isinstance(got[1], p.Tier)
    assert isinstance(got[2], p.PresenceMsg) and got[2].event == p.Presence.SNAPSHOT
    assert got[3] == p.Chat("did you hear me?", alice.slot, got[3].ts_ms) and p.Pose(key, alice.slot) in got
    assert sinks["alice"].take() == [] and sinks["carol"].take() == []
    assert not bob.away and bob.nonce == "n-bob-2" and {"n-bob", "n-bob-2"} <= bob.jtis


def test_a_place_not_resumed_in_time_ends_and_the_others_see_it():
    clock = Clock()
    room, sinks = _room_of_three(clock)
    bob = room.get("bob")
    room.detach(bob)
    clock.t += 10
    assert not room.expire_away(bob, 15.0)                     # still within the grace period
    clock.t += 6
    assert room.expire_away(bob, 15.0)
    left = [m for m in sinks["alice"].take() if isinstance(m, p.PresenceMsg)]
    assert left[0].event == p.Presence.LEFT and left[0].members[0].user_id == "bob"
    assert room.get("bob") is None


def test_a_resume_on_a_new_connection_replaces_a_half_open_one():
    room, sinks = _room_of_three()
    bob = room.get("bob")
    assert room.place_for("bob", "n-bob") is bob                # the resume token's id, while still connected
    assert sinks["bob"].closed == p.CloseCode.DUPLICATE and bob.away
    assert sinks["bob"].outbox is None                          # the dead channel drains nothing meant for the new
    with pytest.raises(UserAlreadyInRoom):
        room.place_for("bob", "some-other-token")
