"""The baseline for bench.fanout: the simplest relay that speaks the protocol. Each POSE is sent to every other
socket of the room with ws.send on the sender's own thread, so one receiver that stops reading stalls its
senders. Same HTTP shape as the real server (create, join), but the join token is not signed.

    gunicorn -c gunicorn.conf.py 'bench.naive_relay:create_app()'
"""
from __future__ import annotations

import threading

from flask import Flask, jsonify, request
from flask_sock import Sock

from meeting.quality import QualityPolicy
from wire import protocol as p

TIERS = "4:30:8,9:20:7,16:10:6"


class Peer:
    def __init__(self, ws, slot: int, user_id: str):
        self.ws, self.slot, self.user_id = ws, slot, user_id
        self.lock = threading.Lock()            # one writer at a time per socket

    def send(self, message: bytes) -> None:
        try:
            with self.lock:
                self.ws.send(message)
        except Exception:  # the peer is gone; its own thread cleans up
            pass


class NaiveRoom:
    def __init__(self, room_id: str, policy: QualityPolicy):
        self.room_id, self.policy = room_id, policy
        self.lock = threading.Lock()
        self.reserved: dict[str, int] = {}
        self.peers: dict[int, Peer] = {}

    def reserve(self, user_id: str) -> int:
        with self.lock:
            if user_id not in self.reserved:
                used = set(self.reserved.values())
                self.reserved[user_id] = next(i for i in range(p.MAX_SLOT + 1) if i not in used)
            return self.reserved[user_id]

    def attach(self, peer: Peer) -> None:
        """Greet the newcomer and tell the others (under the room lock, so TIER counts arrive in order)."""
        with self.lock:
            self.peers[peer.slot] = peer
            others = [x for x in self.peers.values() if x is not peer]
            members = tuple(p.Member(x.slot, x.user_id, x.user_id) for x in self.peers.values())
            tier = self.policy.target(len(self.peers))
            peer.send(p.encode(p.Welcome(peer.slot, self.room_id)))
            joined = p.encode(p.PresenceMsg(p.Presence.JOINED, (p.Member(peer.slot, peer.user_id, peer.user_id),)))
            self._tell(others, joined, tier, len(members))
            peer.send(p.encode(p.Tier(tier.index, tier.fps, tier.bits, len(members))))
            peer.send(p.encode(p.PresenceMsg(p.Presence.SNAPSHOT, members)))

    def detach(self, peer: Peer) -> None:
        with self.lock:
            self.peers.pop(peer.slot, None)
            self.reserved.pop(peer.user_id, None)
            others = list(self.peers.values())
            left = p.encode(p.PresenceMsg(p.Presence.LEFT, (p.Member(peer.slot, peer.user_id, peer.user_id),)))
            self._tell(others, left, self.policy.target(len(others)), len(others))

    @staticmethod
    def _tell(peers: list[Peer], presence: bytes, tier, count: int) -> None:
        tier_msg = p.encode(p.Tier(tier.index, tier.fps, tier.bits, count))
        for other in peers:
            other.send(presence)
            other.send(tier_msg)

    def relay(self, sender: Peer, data: bytes) -> None:
        frame = p.relay_pose(data, sender.slot)
        for peer in list(self.peers.values()):
            if peer is not sender:
                peer.send(frame)


def serve(ws, room: NaiveRoom) -> None:
    msg = p.decode_client(ws.receive(timeout=10))
    if not isinstance(msg, p.Join):
        return
    user_id = msg.token
    peer = Peer(ws, room.reserve(user_id), user_id)
    room.attach(peer)
    try:
        while True:
            try:
                msg = p.decode_client(ws.receive())
            except p.ProtocolError as exc:
                peer.send(p.encode(p.Error(exc.code, exc.message)))
                continue
            if isinstance(msg, p.Pose):
                room.relay(peer, msg.data)
    finally:
        room.detach(peer)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": p.MAX_MESSAGE_BYTES, "ping_interval": None}
    policy = QualityPolicy.parse(TIERS)
    rooms: dict[str, NaiveRoom] = {}
    app.extensions["naive_relay"] = rooms
    sock = Sock(app)

    @app.post("/api/meeting/create")
    def create():
        room_id = request.get_json()["room_id"]
        rooms.setdefault(room_id, NaiveRoom(room_id, policy))
        return jsonify(success=True, room_id=room_id), 201

    @app.post("/api/meeting/join")
    def join():
        body = request.get_json()
        room = rooms.get(body["room_id"])
        if room is None:
            return jsonify(success=False, error="room_not_found"), 404
        slot = room.reserve(body["user_id"])
        return jsonify(success=True, room_id=room.room_id, user_id=body["user_id"], slot=slot,
                       token=body["user_id"], ws_url=f"/ws/meeting/{room.room_id}")

    @sock.route("/ws/meeting/<room_id>")
    def meeting_socket(ws, room_id):
        room = rooms.get(room_id)
        if room is not None:
            serve(ws, room)

    return app
