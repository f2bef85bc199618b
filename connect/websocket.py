"""The WebSocket data channel at /ws/meeting/<room_id>: one session per socket, on the socket's own thread."""
from __future__ import annotations

import logging
import time

from flask import Flask, current_app
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from connect import protocol as p
from connect.writer import CLOSE_REQUEST, WebSocketChannel
from meeting.errors import NotInRoom, RoomNotFound, UserAlreadyInRoom
from meeting.participant import Participant
from meeting.room import JitsiRoom

log = logging.getLogger(__name__)
C = p.CloseCode
_SLICE = 5.0                    # seconds between checks that the socket is still open
HARD_MESSAGE_LIMIT = 65536      # simple-websocket's own cap, a memory guard; the protocol's limit is lower


class SessionEnd(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class MeetingSession:
    """JOIN first (with a join token), then POSE and CHAT until the socket closes."""

    def __init__(self, ws, room_id: str, services):
        self.ws, self.room_id, self.services = ws, room_id, services
        self.cfg = services.config
        self.channel = WebSocketChannel(ws, services.writer, self.cfg["WS_SEND_BUFFER"])
        self.room: JitsiRoom | None = None
        self.member: Participant | None = None

    def run(self) -> None:
        code, reason = C.NORMAL, "bye"
        try:
            self._join()
            self._serve()
        except SessionEnd as end:
            code, reason = end.code, end.reason
        except ConnectionClosed:
            code, reason = C.NORMAL, "peer closed"
        finally:
            self._leave(code, reason)

    def _receive(self, timeout: float | None = None):
        """The next message; None after `timeout`. simple-websocket can drop the socket without waking the
        receiver (e.g. after its own size check), so the wait is cut into slices that re-check the socket."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            data = self.ws.receive(timeout=max(wait, 0))
            if data is not None or not self.ws.connected:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
        if data is None:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        if data is CLOSE_REQUEST:
            raise SessionEnd(*self.channel.close_request)
        if isinstance(data, str):
            raise SessionEnd(C.UNSUPPORTED_DATA, "messages are binary msgpack")
        return data

    def _join(self) -> None:
        data = self._receive(timeout=self.cfg["JOIN_TIMEOUT"])
        if data is None:
            raise SessionEnd(C.JOIN_TIMEOUT, "no JOIN within the join timeout")
        try:
            msg = p.decode_client(data)
        except p.ProtocolError as exc:
            raise SessionEnd(exc.close_code or C.NOT_JOINED, f"the first message must be JOIN: {exc.message}") from None
        if not isinstance(msg, p.Join):
            raise SessionEnd(C.NOT_JOINED, "the first message must be JOIN")
        claim = self.services.tokens.verify(msg.token)
        if claim is None:
            raise SessionEnd(C.BAD_TOKEN, "missing, forged or expired join token")
        try:
            self.room = self.services.manager.get_room(self.room_id)
            if claim.room_id != self.room_id:
                raise SessionEnd(C.BAD_TOKEN, "the join token is for another room")
            self.member = self.room.attach(claim.user_id, claim.nonce, self.channel)
        except RoomNotFound:
            raise SessionEnd(C.ROOM_NOT_FOUND, "the room does not exist") from None
        except NotInRoom:
            raise SessionEnd(C.BAD_TOKEN, "the join token's reservation is gone: join again") from None
        except UserAlreadyInRoom:
            raise SessionEnd(C.DUPLICATE, "this user already has a channel open in the room") from None

    def _serve(self) -> None:
        room, member, bad = self.room, self.member, 0
        max_bad = self.cfg["MAX_BAD_MESSAGES"]
        while True:
            data = self._receive()
            try:
                msg = p.decode_client(data)
            except p.ProtocolError as exc:
                if exc.close_code:
                    raise SessionEnd(exc.close_code, exc.message) from None
                bad += 1
                if bad >= max_bad:
                    raise SessionEnd(C.BAD_MESSAGES, f"{bad} invalid messages in a row") from None
                member.send(p.encode(p.Error(exc.code, exc.message)))
                continue
            bad = 0
            if isinstance(msg, p.Pose):
                room.relay_pose(member, msg.data)
            elif isinstance(msg, p.Audio):
                room.hear_audio(member, msg)
            elif isinstance(msg, p.AudioStop):
                room.hear_audio_end(member)
            elif isinstance(msg, p.Chat):
                if room.post_chat(member, msg.text) is None:
                    member.send(p.encode(p.Error("rate_limited", "too many chat messages: slow down")))
            else:
                member.send(p.encode(p.Error("not_allowed", "already joined")))

    def _leave(self, code: int, reason: str) -> None:
        if self.member is not None and self.room is not None:
            try:
                self.room.remove(self.member.user_id)
            except NotInRoom:
                pass                                   # already removed by the HTTP leave
        if code != C.NORMAL or reason != "peer closed":
            log.info("room %s: socket closed %d (%s)", self.room_id, code, reason)
        self.channel.shutdown(code, reason)


def init_app(app: Flask) -> None:
    sock = Sock(app)
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": HARD_MESSAGE_LIMIT, "ping_interval": None}

    @sock.route("/ws/meeting/<room_id>")
    def meeting_socket(ws, room_id):
        MeetingSession(ws, room_id, current_app.extensions["avatar"]).run()
