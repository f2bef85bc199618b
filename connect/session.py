"""A participant's session on a data channel, whatever the transport: JOIN with a join token first, then POSE,
CHAT and AUDIO until the channel ends. A transport hands it each message and gives it a connection to close
(`conn.close(code, reason)`) and the participant's channel (`conn.channel`, a meeting.participant.DataChannel)."""
from __future__ import annotations

from meeting.errors import NotInRoom, RoomNotFound, UserAlreadyInRoom
from meeting.participant import Participant
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
        self.room: JitsiRoom | None = None
        self.member: Participant | None = None
        self.bad = 0

    def on_message(self, data: bytes) -> None:
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
        claim = self.services.tokens.verify(msg.token)
        if claim is None:
            raise SessionEnd(C.BAD_TOKEN, "missing, forged or expired join token")
        try:
            self.room = self.services.manager.get_room(self.room_id)
            if claim.room_id != self.room_id:
                raise SessionEnd(C.BAD_TOKEN, "the join token is for another room")
            self.member = self.room.attach(claim.user_id, claim.nonce, self.conn.channel)
        except RoomNotFound:
            raise SessionEnd(C.ROOM_NOT_FOUND, "the room does not exist") from None
        except NotInRoom:
            raise SessionEnd(C.BAD_TOKEN, "the join token's reservation is gone: join again") from None
        except UserAlreadyInRoom:
            raise SessionEnd(C.DUPLICATE, "this user already has a channel open in the room") from None

    def _serve(self, data: bytes) -> None:
        room, member = self.room, self.member
        try:
            msg = p.decode_client(data)
        except p.ProtocolError as exc:
            if exc.close_code:
                raise SessionEnd(exc.close_code, exc.message) from None
            self.bad += 1
            if self.bad >= self.services.config["MAX_BAD_MESSAGES"]:
                raise SessionEnd(C.BAD_MESSAGES, f"{self.bad} invalid messages in a row") from None
            member.send(p.encode(p.Error(exc.code, exc.message)))
            return
        self.bad = 0
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

    def leave(self) -> None:
        if self.member is not None and self.room is not None:
            try:
                self.room.remove(self.member.user_id, only=self.member)
            except NotInRoom:
                pass                                   # already removed (the HTTP leave), or it rejoined since
