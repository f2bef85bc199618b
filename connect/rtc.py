"""WebRTC data channels (aiortc): the second transport into the same rooms.

Signalling is one HTTP request (`POST /api/meeting/<room_id>/rtc`: the browser's offer in, the server's answer
out, ICE candidates inside them). The browser opens two data channels: "control" (reliable, ordered) for
JOIN/WELCOME, PRESENCE, TIER, CHAT, AUDIO … and "pose" (unordered, no retransmission) for pose frames, so a
lost pose is simply replaced by the next. Both carry the same protocol messages as the WebSocket, and a channel
the server ends gets a BYE with the close code the WebSocket would have used.

aiortc sends every data-channel message as its own SCTP packet, DTLS record and UDP datagram, in Python, and
every datagram costs a SACK back: datagrams are what WebRTC costs the server. So what is due for one receiver
goes out as one BUNDLE per channel, at the room's send-outs: the room's frame period on one clock, announced
to each receiver in a TICK (every TICK_EVERY seconds), so its pages send their poses RTC_TICK_LEAD_MS before a
send-out (each a little earlier or later than the next, by its slot, within RTC_TICK_HOLD_MS) and everyone's
frames leave together, one datagram per receiver per frame period. How early a
sender's frames really arrive is measured, and its next TICK corrects for it (a TICK reaches a page a little
after it was sent, and a page's timers are late by a little too). Rooms' send-outs are spread over the period,
so that rooms do not all send at once. A frame that comes
between send-outs (a sender not in step, a WebSocket sender, the AI host) waits at most RTC_FLUSH_MS, or for
the send-out when that is within RTC_TICK_HOLD_MS.

Every peer connection lives on one asyncio loop thread per process (`RtcService`); Flask's threads enter it
with `run_coroutine_threadsafe(...).result(timeout)`. A peer connection is closed when its participant leaves,
when ICE fails or consent is lost, when its channels do not open in time, when it sends no JOIN in time, and
on shutdown.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from dataclasses import dataclass

from config import Settings
from connect.session import MeetingSession
from wire import protocol as p

log = logging.getLogger(__name__)
C = p.CloseCode
POSE_BUNDLE_BYTES = 1100          # a pose bundle fits one datagram: losing it loses one frame period, no more
ORDERED_BUNDLE_BYTES = p.MAX_MESSAGE_BYTES
CONGESTED_BYTES = 64 * 1024       # queued in a channel above this: wait for it to drain (poses stay latest-wins)
BYE_GRACE = 0.3                   # seconds a BYE has to leave before the connection closes
TICK_EVERY = 1.0                  # seconds between TICKs to a receiver (clocks drift, tiers change)
STEP_SAMPLES = 15                 # a sender's latest pose arrivals, for how far off its sending is


class RtcError(Exception):
    """An offer the server will not answer; `code` is the API's error code."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def bundles(messages: list[bytes], limit: int) -> list[bytes]:
    """Messages packed into as few data-channel messages as fit `limit` bytes each (a lone message goes as it is)."""
    out, batch, size = [], [], 0
    for m in messages:
        if batch and (size + len(m) + 3 > limit or len(batch) >= p.MAX_BUNDLE):
            out.append(batch[0] if len(batch) == 1 else p.bundle(batch))
            batch, size = [], 0
        batch.append(m)
        size += len(m) + 3
    if batch:
        out.append(batch[0] if len(batch) == 1 else p.bundle(batch))
    return out


@dataclass
class RtcStats:
    peers: int = 0
    messages_out: int = 0            # data-channel messages sent (each one SCTP packet, one datagram when small)
    messages_in: int = 0


class RtcChannel:
    """A participant's data channel over WebRTC (meeting.participant.DataChannel). Any thread may call it; the
    work happens on the loop."""
    transport = "webrtc"

    def __init__(self, peer: RtcPeer):
        self.peer, self.outbox = peer, None
        self._flush_asked = False

    def bind(self, outbox) -> None:
        self.outbox = outbox

    def notify(self) -> None:
        if not self._flush_asked:
            self._flush_asked = True
            self.peer.service.loop.call_soon_threadsafe(self.peer.schedule_flush)

    def close(self, code: int, reason: str) -> None:
        self.peer.service.loop.call_soon_threadsafe(self.peer.close, code, reason)


class RtcPeer:
    """One participant's peer connection, its two channels and its session."""

    def __init__(self, service: RtcService, pc, room_id: str):
        self.service, self.pc, self.room_id = service, pc, room_id
        self.control = None
        self.pose = None
        self.channel = RtcChannel(self)
        self.session = MeetingSession(self, room_id, service.services)
        self.closing = False
        self.ticked_at = -TICK_EVERY
        self.offset = (zlib.crc32(room_id.encode()) % 1000) / 1000     # the room's send-outs in the period
        self.early: list[float] = []     # how long before a send-out this sender's poses arrived, minus the aim
        self.correction = 0.0            # how much later than the send-out's own time its TICK tells it to send
        self._flush_handle: asyncio.TimerHandle | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # --- set-up -------------------------------------------------------------------------------

    def start(self) -> None:
        loop, s = self.service.loop, self.service.settings
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)
        self._timers.append(loop.call_later(s["RTC_OPEN_TIMEOUT"], self._open_deadline))

    def _on_channel(self, channel) -> None:
        if channel.label == "control" and self.control is None:
            self.control = channel
            channel.on("open", self._on_control_open)
            if channel.readyState == "open":
                self._on_control_open()
        elif channel.label == "pose" and self.pose is None:
            self.pose = channel
        else:
            channel.close()                           # a channel we did not ask for
            return
        channel.on("message", self._on_message)
        channel.bufferedAmountLowThreshold = CONGESTED_BYTES // 2
        channel.on("bufferedamountlow", self.schedule_flush)

    def _on_control_open(self) -> None:
        self._timers.append(self.service.loop.call_later(self.service.settings["JOIN_TIMEOUT"], self._join_deadline))

    def _open_deadline(self) -> None:
        if self.control is None or self.control.readyState != "open":
            log.info("room %s: a WebRTC peer's channels did not open in time", self.room_id)
            self.close(C.JOIN_TIMEOUT, "the data channels did not open in time")

    def _join_deadline(self) -> None:
        if self.session.member is None:
            self.close(C.JOIN_TIMEOUT, "no JOIN within the join timeout")

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self.closing:
            log.info("room %s: WebRTC connection %s", self.room_id, self.pc.connectionState)
            self.service.loop.create_task(self._end(resumable=self.pc.connectionState == "failed"))

    # --- in -----------------------------------------------------------------------------------

    def _on_message(self, data) -> None:
        if self.closing:
            return
        self.service.stats.messages_in += 1
        if isinstance(data, str):
            self.close(C.UNSUPPORTED_DATA, "messages are binary msgpack")
            return
        if self.session.member is not None and self.pose is not None and len(data) > 4 and data[2] == p.MsgType.POSE:
            self._pose_arrived()
        try:
            self.session.on_message(data)
        except Exception:                           # a bug in one session must not stop the loop
            log.exception("room %s: WebRTC message failed", self.room_id)
            self.close(1011, "server error")

    def _pose_arrived(self) -> None:
        """Note how far this sender's pose came from arriving at the aim (half the lead before a send-out)."""
        now, period = self.service.loop.time(), self.period
        error = self.service.next_tick(now, period, self.offset) - now - self.lead / 2
        self.early.append((error + period / 2) % period - period / 2)       # just after a send-out is late
        del self.early[:-STEP_SAMPLES]

    def _tick_message(self, now: float) -> bytes:
        """When this receiver's room sends out next, shifted by how early (or late) its poses arrive."""
        period = self.period
        if self.early:                   # what is left of its error, after the corrections so far (damped)
            error = sorted(self.early)[len(self.early) // 2]
            self.correction = max(-period / 2, min(period / 2, self.correction + 0.7 * error))
        self.early.clear()
        next_in = (self.service.next_tick(now, period, self.offset) - now + self.correction) % period
        return p.encode(p.Tick(round(period * 1e6), round(next_in * 1e6), round(self.lead * 1e6)))

    @property
    def lead(self) -> float:
        """How long before a send-out this sender should send: RTC_TICK_LEAD_MS, and up to three steps of a
        quarter of the hold window more, by its slot, so a room's senders do not all arrive at the same moment."""
        member, service = self.session.member, self.service
        step = max(0.0, service.tick_hold - service.tick_lead) / 4
        return service.tick_lead + (member.slot % 4 if member is not None else 0) * step

    # --- out ----------------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Send at the room's next send-out when it is near, else within RTC_FLUSH_MS."""
        if self._flush_handle is None and not self.closing:
            loop = self.service.loop
            now = loop.time()
            tick = self.service.next_tick(now, self.period, self.offset)
            at = tick if tick - now <= self.service.tick_hold else now + self.service.flush_delay
            self._flush_handle = loop.call_at(at, self._flush)

    @property
    def period(self) -> float:
        room = self.session.room
        return 1.0 / room.tier.fps if room is not None else 1.0 / 30

    def _flush(self) -> None:
        self._flush_handle = None
        self.channel._flush_asked = False
        outbox = self.channel.outbox
        if outbox is None or self.closing or self.control is None or self.control.readyState != "open":
            return
        pose = self.pose if self.pose is not None and self.pose.readyState == "open" else self.control
        send_ordered = self.control.bufferedAmount < CONGESTED_BYTES
        send_poses = pose.bufferedAmount < CONGESTED_BYTES
        ordered = outbox.drain(ordered=True, poses=False) if send_ordered else []
        poses = outbox.drain(ordered=False, poses=True) if send_poses else []
        now = self.service.loop.time()
        if self.session.member is not None and now - self.ticked_at >= TICK_EVERY:
            self.ticked_at = now
            ordered.append(self._tick_message(now))
        try:
            for message in bundles(ordered, ORDERED_BUNDLE_BYTES):
                self.control.send(message)
                self.service.stats.messages_out += 1
            for message in bundles(poses, POSE_BUNDLE_BYTES):
                pose.send(message)
                self.service.stats.messages_out += 1
        except Exception as exc:                     # the transport went away under us
            log.info("room %s: WebRTC send failed: %s", self.room_id, exc)
            self.service.loop.create_task(self._end(resumable=True))

    # --- the end ------------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Tell the peer why (BYE, on the reliable channel), then close the connection. On the loop."""
        if self.closing:
            return
        self.closing = True
        self.session.traffic.add(f"close.{code}")
        if code not in (C.NORMAL, C.GOING_AWAY):
            log.info("room %s: WebRTC channel closed %d (%s)", self.room_id, code, reason)
        try:
            if self.control is not None and self.control.readyState == "open":
                self.control.send(p.encode(p.Bye(int(code), reason[:200])))
        except Exception:
            pass
        self.service.loop.call_later(BYE_GRACE, lambda: self.service.loop.create_task(self._end()))

    async def _end(self, resumable: bool = False) -> None:
        """Free everything: the participant leaves the room (or, `resumable`, keeps its place for a resume: the
        connection failed, nobody closed it), the connection closes. Runs once."""
        if self.service.peers.pop(id(self), None) is None:
            return
        self.closing = True
        for timer in self._timers + [self._flush_handle]:
            if timer is not None:
                timer.cancel()
        self.session.leave(resumable)
        await self.pc.close()
        self.service.stats.peers = len(self.service.peers)


class RtcService:
    """The process's WebRTC side: one asyncio loop thread and every peer connection on it."""

    def __init__(self, settings: Settings, services):
        self.settings, self.services = settings, services
        self.ice = settings.ice_servers
        self.flush_delay = settings["RTC_FLUSH_MS"] / 1000.0
        self.tick_hold = settings["RTC_TICK_HOLD_MS"] / 1000.0
        self.tick_lead = settings["RTC_TICK_LEAD_MS"] / 1000.0
        self.peers: dict[int, RtcPeer] = {}
        self.stats = RtcStats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None:
                ready = threading.Event()

                def run() -> None:
                    self.loop = asyncio.new_event_loop()
                    ready.set()
                    self.loop.run_forever()
                threading.Thread(target=run, name="rtc-loop", daemon=True).start()
                ready.wait(5)
        return self.loop

    @staticmethod
    def next_tick(now: float, period: float, offset: float = 0.0) -> float:
        """The next send-out after `now` of a room with this frame period whose send-outs are `offset` periods
        from the loop clock's zero."""
        return (int(now / period - offset) + 1 + offset) * period

    def answer(self, room_id: str, sdp: str, timeout: float = 10.0) -> dict:
        """The answer to a browser's offer (called from a request's thread)."""
        if "m=application" not in sdp:
            raise RtcError("no_data_channel", "the offer has no data channel (m=application)")
        future = asyncio.run_coroutine_threadsafe(self._answer(room_id, sdp), self._start())
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise RtcError("rtc_timeout", "the server could not answer the offer in time", 503) from None

    async def _answer(self, room_id: str, sdp: str) -> dict:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in self.ice]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        peer = RtcPeer(self, pc, room_id)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise RtcError("bad_sdp", f"the offer could not be used: {type(exc).__name__}: {str(exc)[:160]}") from None
        self.peers[id(peer)] = peer
        self.stats.peers = len(self.peers)
        peer.start()
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def close_all(self, code: int = C.GOING_AWAY, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Close every peer connection (on shutdown)."""
        if self.loop is None:
            return

        async def close() -> None:
            for peer in list(self.peers.values()):
                peer.close(code, reason)
            deadline = time.monotonic() + BYE_GRACE + 1.0
            while self.peers and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout)
        except Exception:
            log.exception("closing the WebRTC peers failed")
