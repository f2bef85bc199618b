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

from connect.session import MeetingSession
from connect.writer import WebSocketChannel
from connect.wsframes import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, make_parser, pong_frame
from wire import protocol as p

log = logging.getLogger(__name__)
C = p.CloseCode
# Frames above this are refused before they are read whole (1009). Messages above protocol.MAX_MESSAGE_BYTES
# but under this are read, drained and refused with the same code: the connection then closes cleanly.
HARD_MESSAGE_LIMIT = 65536
CLOSE_TIMEOUT = 2.0             # seconds the peer has to answer our close frame


class Connection:
    """One data-channel socket: its frames in (on the reader thread), its channel out (the writer thread)."""

    def __init__(self, ws, room_id: str, services):
        # A private socket object on a dup of the descriptor, so our non-blocking reads and writes are our own.
        self.sock = socket.socket(fileno=os.dup(ws.sock.fileno()))
        self.channel = WebSocketChannel(self.sock, services.writer, services.config["WS_SEND_BUFFER"])
        self.parser = make_parser(services.config["WS_PARSER"], HARD_MESSAGE_LIMIT)
        self.session = MeetingSession(self, room_id, services)
        self.finished = threading.Event()          # the reader is done with the socket
        self.done_reading = False
        self.slow = False                          # it flooded: read a little at a time (connect.reader)
        self.peer_closed = False                   # the client said goodbye (a close frame)

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
        elif opcode == OP_CLOSE:                    # (the parser has checked its code and reason)
            self.peer_closed = True
            self.close(int.from_bytes(payload[:2], "big") if payload else C.NORMAL, "bye")
            self.done_reading = True                # the peer's Close answered by ours: the handshake is done

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after what is queued and stop writing; reading goes on (data is dropped) until
        the peer's Close or EOF, or `abort()` after the close timeout. Safe from any thread."""
        if self.channel.close_request is None:
            self.session.traffic.add(f"close.{code}")
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
        """The socket is done. Without a close from either side (or after a ping went unanswered) the network
        dropped it, not the person: the session keeps the place for a resume."""
        request = self.channel.close_request
        self.session.leave(resumable=not self.peer_closed and (request is None or request[0] == 1008))
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
