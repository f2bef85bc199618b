"""A blocking WebRTC test client (aiortc, on a loop thread of its own) with the same surface as
tests.wsclient.MeetingClient: join, send, recv, expect, drain, close."""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time

from tests.wsclient import Messages
from wire import protocol as p

_ids = itertools.count()


class RtcClient(Messages):
    def __init__(self, server, room_id: str, user_id: str | None = None, display_name: str | None = None,
                 join: bool = True, pose_channel: bool = True, timeout: float = 10.0):
        self.server, self.room_id = server, room_id
        self.user_id = user_id or f"rtc{next(_ids)}"
        self.inbox: queue.Queue = queue.Queue()
        self.received: list = []
        self.raw_messages = 0                     # data-channel messages (a BUNDLE counts once)
        self.bye: p.Bye | None = None
        self.slot = None
        self.closed = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name=f"rtc-client-{self.user_id}", daemon=True).start()
        body = {"room_id": room_id, "user_id": self.user_id}
        if display_name:
            body["display_name"] = display_name
        status, answer = server.api("POST", "/api/meeting/join", body)
        assert status == 200, answer
        self.token, self.rtc = answer["token"], answer["rtc"]
        self._run(self._connect(pose_channel), timeout)
        if join:
            self.send(p.Join(self.token))
            self.slot = self.expect(p.Welcome, timeout).slot

    def _run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def offer(self, pose_channel: bool = True):
        """A peer connection with the page's two channels, and its offer (ICE gathered)."""
        from aiortc import RTCConfiguration, RTCPeerConnection
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.control = self.pc.createDataChannel("control", ordered=True)
        self.pose = self.pc.createDataChannel("pose", ordered=False, maxRetransmits=0) if pose_channel else None
        for channel in filter(None, (self.control, self.pose)):
            channel.on("message", self._on_message)
        self.pc.on("connectionstatechange", self._on_state)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription

    async def _connect(self, pose_channel: bool) -> None:
        from aiortc import RTCSessionDescription
        offer = await self.offer(pose_channel)
        status, answer = await asyncio.to_thread(self.server.api, "POST", self.rtc["url"],
                                                 {"token": self.token, "sdp": offer.sdp, "type": offer.type})
        assert status == 200, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        opened = asyncio.get_running_loop().create_future()
        if self.control.readyState == "open":
            opened.set_result(None)
        self.control.on("open", lambda: opened.done() or opened.set_result(None))
        await asyncio.wait_for(opened, 10)

    def _on_message(self, data) -> None:
        self.raw_messages += 1
        for msg in [data] if isinstance(data, str) else p.unbundle(data):
            if isinstance(msg, p.Bye):
                self.bye = msg
            self.inbox.put(msg)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.closed.set()

    def send(self, msg) -> None:
        data = msg if isinstance(msg, (bytes, str)) else p.encode(msg)
        channel = self.pose if isinstance(msg, p.Pose) and self.pose is not None else self.control
        self.loop.call_soon_threadsafe(channel.send, data)

    def recv(self, timeout: float = 5.0):
        try:
            msg = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        self.received.append(msg)
        return msg

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to end the channel: the BYE's code (None if none came)."""
        deadline = time.monotonic() + timeout
        while self.bye is None and time.monotonic() < deadline:
            self.recv(0.05)
        return self.bye.code if self.bye else None

    def vanish(self) -> None:
        """Stop answering at all, as a peer whose network went away (no goodbye of any kind)."""
        async def cut():
            for transceiver in [self.pc.sctp] if self.pc.sctp else []:
                ice = transceiver.transport.transport
                await ice._connection.close()
        self._run(cut())

    def close(self) -> None:
        try:
            self._run(self.pc.close(), 5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
