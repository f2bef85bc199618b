"""A participant's session on a data channel, whatever the transport: JOIN with a join token first, then POSE,
CHAT and AUDIO until the channel ends. A transport hands it each message and gives it a connection to close
(`conn.close(code, reason)`) and the participant's channel (`conn.channel`, a meeting.participant.DataChannel)."""
from __future__ import annotations

import secrets

from connect.tokens import TokenError
from meeting.errors import MeetingError, NotInRoom, RoomFull, RoomNotFound, UserAlreadyInRoom
from meeting.participant import Participant, RateLimiter
from meeting.room import JitsiRoom
from wire import protocol as p

C = p.CloseCode


class SessionEnd(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class MeetingSession:
    """JOIN first (with a join token), then POSE, CHAT and AUDIO until the channel closes. Runs on the
    transport's own thread, one message at a time."""

    def __init__(self, conn, room_id: str, services):
        self.conn, self.room_id, self.services = conn, room_id, services
        self.traffic = services.manager.traffic
        self.room: JitsiRoom | None = None
        self.member: Participant | None = None
        self.bad = 0
        config = services.config
        self.budget = RateLimiter(config["INPUT_RATE"], config["INPUT_BURST"])
        self.throttled = False              # over its input budget: the transport may stop reading for a moment

    def on_message(self, data: bytes) -> None:
        if not self.budget.allow():         # flooding: dropped unread (not even decoded)
            self.throttled = True
            self.traffic.add("drop.flood")
            return
        try:
            if self.member is None:
                self._join(data)
            else:
                self._serve(data)
        except SessionEnd as end:
            self.conn.close(end.code, end.reason)

    def _join(self, data: bytes) -> None:
        try:
            msg = p.decode_client(data)
        except p.ProtocolError as exc:
            raise SessionEnd(exc.close_code or C.NOT_JOINED, f"the first message must be JOIN: {exc.message}") from None
        if not isinstance(msg, p.Join):
            raise SessionEnd(C.NOT_JOINED, "the first message must be JOIN")
        if self.services.draining:
            raise SessionEnd(C.RESTARTING, "server restarting: join again")
        tokens = self.services.tokens
        try:
            self.services.manager.get_room(self.room_id)          # 4004 before any judgement of the token
            claim = tokens.verify(msg.token, self.room_id)
            self.room, member = self.services.manager.place(self.room_id, claim.user_id, claim.jti, claim.display_name)
            tokens.spend(claim)
            nonce = secrets.token_urlsafe(12)        # the next resume token's id
            resume = tokens.issue(self.room_id, claim.user_id, nonce, member.display_name,
                                  ttl=self.services.config.RESUME_TOKEN_TTL)
            self.member = self.room.attach(claim.user_id, claim.jti, self.conn.channel, resume, nonce)
        except TokenError as exc:
            raise SessionEnd(C.BAD_TOKEN, exc.message) from None
        except RoomNotFound:
            raise SessionEnd(C.ROOM_NOT_FOUND, "the room does not exist") from None
        except NotInRoom:
            raise SessionEnd(C.BAD_TOKEN, "the join token's reservation is gone: join again") from None
        except UserAlreadyInRoom as exc:
            raise SessionEnd(C.DUPLICATE, exc.message) from None
        except RoomFull as exc:
            raise SessionEnd(C.ROOM_FULL, exc.message) from None
        except MeetingError as exc:
            if exc.code == "backplane_unavailable":          # Redis is away: come back in a moment
                raise SessionEnd(C.RESTARTING, exc.message) from None
            raise SessionEnd(C.BAD_TOKEN, exc.message) from None

    def _serve(self, data: bytes) -> None:
        room, member = self.room, self.member
        try:
            msg = p.decode_client(data)
        except p.ProtocolError as exc:
            if exc.close_code:
                raise SessionEnd(exc.close_code, exc.message) from None
            self.bad += 1
            self.traffic.add("drop.bad_message")
            if self.bad >= self.services.config["MAX_BAD_MESSAGES"]:
                raise SessionEnd(C.BAD_MESSAGES, f"{self.bad} invalid messages in a row") from None
            member.send(p.encode(p.Error(exc.code, exc.message)))
            return
        self.bad = 0
        if isinstance(msg, p.Pose):
            self.traffic.add("in.pose")
            self.traffic.add("in.pose_bytes", len(msg.data))
            room.relay_pose(member, msg.data)
        elif isinstance(msg, p.Audio):
            self.traffic.add("in.audio")
            room.hear_audio(member, msg)
        elif isinstance(msg, p.AudioStop):
            room.hear_audio_end(member)
        elif isinstance(msg, p.Chat):
            self.traffic.add("in.chat")
            if room.post_chat(member, msg.text) is None:
                member.send(p.encode(p.Error("rate_limited", "too many chat messages: slow down")))
        else:
            member.send(p.encode(p.Error("not_allowed", "already joined")))

    def leave(self, resumable: bool = False) -> None:
        """The channel ended. `resumable`: it dropped without a close (the network, not the person), so the place
        is kept for RESUME_GRACE seconds for a JOIN with the resume token."""
        if self.member is None or self.room is None or self.member.channel is not self.conn.channel:
            return                                     # not ours any more: left, or resumed on another channel
        if resumable and self.room.detach(self.member):
            return
        try:
            self.room.remove(self.member.user_id, only=self.member)
        except NotInRoom:
            pass                                   # already removed (the HTTP leave), or it resumed or rejoined since
