"""The WebSocket data channel at /ws/meeting/<room_id>.

flask-sock does the upgrade (permessage-deflate is never agreed: frames of tens of bytes gain nothing from it).
The socket then belongs to the process's reader thread (connect.reader), which hands each message to this
socket's `MeetingSession`, and to its writer thread (connect.writer). The request's own thread only waits for
the end and tidies up.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from flask import Flask, current_app, request
from flask_sock import Sock

from connect import protocol as p
from connect.writer import WebSocketChannel
from connect.wsframes import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser, pong_frame
from meeting.errors import NotInRoom, RoomNotFound, UserAlreadyInRoom
from meeting.participant import Participant
from meeting.room import JitsiRoom

log = logging.getLogger(__name__)
C = p.CloseCode
# Frames above this are refused before they are read whole (1009). Messages above protocol.MAX_MESSAGE_BYTES
# but under this are read, drained and refused with the same code: the connection then closes cleanly.
HARD_MESSAGE_LIMIT = 65536
CLOSE_TIMEOUT = 2.0             # seconds the peer has to answer our close frame


class SessionEnd(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class MeetingSession:
    """JOIN first (with a join token), then POSE, CHAT and AUDIO until the socket closes. Runs on the
    reader thread, one message at a time."""

    def __init__(self, conn: Connection, room_id: str, services):
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
                self.room.remove(self.member.user_id)
            except NotInRoom:
                pass                                   # already removed by the HTTP leave


class Connection:
    """One data-channel socket: its frames in (on the reader thread), its channel out (the writer thread)."""

    def __init__(self, ws, room_id: str, services):
        # A private socket object on a dup of the descriptor, so our non-blocking reads and writes are our own.
        self.sock = socket.socket(fileno=os.dup(ws.sock.fileno()))
        self.channel = WebSocketChannel(self.sock, services.writer, services.config["WS_SEND_BUFFER"])
        self.parser = FrameParser(HARD_MESSAGE_LIMIT)
        self.session = MeetingSession(self, room_id, services)
        self.finished = threading.Event()          # the reader is done with the socket
        self.done_reading = False

    def on_frame(self, opcode: int, payload: bytes) -> None:
        if self.channel.close_request is not None:     # closing: only the peer's Close matters now
            if opcode == OP_CLOSE:
                self.done_reading = True
            return
        if opcode == OP_BINARY:
            self.session.on_message(payload)
        elif opcode == OP_TEXT:
            self.close(C.UNSUPPORTED_DATA, "messages are binary msgpack")
        elif opcode == OP_PING:
            self.channel.send_control(pong_frame(payload))
        elif opcode == OP_PONG:
            self.channel.pong_received = True
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else C.NORMAL
            self.close(code if 1000 <= code < 5000 and code not in (1005, 1006, 1015) else C.NORMAL, "bye")
            self.done_reading = True                # the peer's Close answered by ours: the handshake is done

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after what is queued and stop writing; reading goes on (data is dropped) until
        the peer's Close or EOF, or `abort()` after the close timeout. Safe from any thread."""
        self.channel.close(code, reason)
        if code not in (C.NORMAL, C.GOING_AWAY):
            log.info("room %s: socket closed %d (%s)", self.session.room_id, code, reason)

    def on_eof(self) -> None:
        self.done_reading = True

    def abort(self) -> None:
        """The peer never answered our close: stop reading (the reader sees EOF and lets go)."""
        self.done_reading = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def end(self) -> None:
        self.session.leave()
        self.channel.release()


class _NoReaderThread:
    """simple-websocket starts a reader thread per socket; ours never runs, since connect.reader reads."""

    name = "unused"

    def __init__(self, target=None, **kwargs):
        pass

    def start(self) -> None:
        pass


def init_app(app: Flask) -> None:
    sock = Sock(app)
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": _NoReaderThread, "ping_interval": None}

    @app.before_request
    def _no_compression():
        if request.path.startswith("/ws/"):
            request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)

    @sock.route("/ws/meeting/<room_id>")
    def meeting_socket(ws, room_id):
        services = current_app.extensions["avatar"]
        conn = Connection(ws, room_id, services)
        services.reader.add(conn)
        join_by = time.monotonic() + services.config["JOIN_TIMEOUT"]
        while not conn.finished.wait(1.0):
            now, closing_at = time.monotonic(), conn.channel.closing_at   # any close: ours, a ping's, 4013 …
            if closing_at is None and conn.session.member is None and now > join_by:
                conn.close(C.JOIN_TIMEOUT, "no JOIN within the join timeout")
            elif closing_at is not None and now - closing_at > CLOSE_TIMEOUT:
                conn.abort()
        conn.end()
        ws.connected = False                        # flask-sock's own close must not write to the socket
