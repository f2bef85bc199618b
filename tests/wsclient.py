"""A blocking WebSocket test client that speaks the meeting protocol (over the `websockets` library)."""
from __future__ import annotations

import itertools
import socket
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from wire import posedata
from wire import protocol as p

_ids = itertools.count()


class Messages:
    """Waiting for messages, for a test client with `recv(timeout)`, `received` and `user_id`."""

    def expect(self, kind, timeout: float = 5.0, where=lambda m: True):
        """Read until a message of `kind` matching `where` arrives; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if isinstance(msg, kind) and where(msg):
                return msg
        raise AssertionError(f"{self.user_id}: no {kind.__name__} within {timeout} s; got {self.received[-5:]}")

    def drain(self, seconds: float) -> list:
        """Everything that arrives within `seconds`."""
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None:
                out.append(msg)
        return out


class MeetingClient(Messages):
    def __init__(self, server, room_id: str, user_id: str | None = None, join: bool = True,
                 display_name: str | None = None):
        self.server, self.room_id = server, room_id
        self.user_id = user_id or f"user{next(_ids)}"
        self.ws = None
        self.slot = None
        self.received: list = []
        if join:
            body = {"room_id": room_id, "user_id": self.user_id}
            if display_name:
                body["display_name"] = display_name
            status, body = server.api("POST", "/api/meeting/join", body)
            assert status == 200, body
            self.token = body["token"]
            self.open()
            self.send(p.Join(self.token))
            welcome = self.expect(p.Welcome)
            self.slot, self.resume = welcome.slot, welcome.resume

    def open(self):
        self.ws = connect(f"{self.server.ws_url}/ws/meeting/{self.room_id}", compression=None, max_size=None,
                          open_timeout=5, ping_interval=None, max_queue=None).__enter__()
        return self

    def drop(self) -> None:
        """End the connection the way a network does: no close frame, just gone."""
        self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.ws.socket.close()

    def send(self, msg) -> None:
        self.ws.send(msg if isinstance(msg, (bytes, str)) else p.encode(msg))

    def send_pose(self, values: dict, bits: int = 8, key_id: int = 1, seq: int = 0) -> bytes:
        data = posedata.encode_key(posedata.quantize(values, bits), bits, key_id, seq)
        self.send(p.Pose(data))
        return data

    def recv(self, timeout: float = 5.0):
        """The next message, decoded; None on timeout."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        msg = p.decode_server(raw)
        self.received.append(msg)
        return msg

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket; its close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except TimeoutError:
            return None
        return None

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
