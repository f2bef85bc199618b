"""A participant, its data channel (the sink a transport implements) and its send-rate limit."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from meeting.outbox import Outbox


class DataChannel(Protocol):
    """What a transport gives a participant: a way to be told the outbox has something, and a way out."""
    transport: str                      # its name in monitoring: "websocket", "webrtc", "host"

    def bind(self, outbox: Outbox | None) -> None:
        """The participant's outbox, which the transport drains from now on (None: nothing any more)."""

    def notify(self) -> None:
        """The outbox went from empty to non-empty: drain it soon, on the transport's own thread."""

    def close(self, code: int, reason: str) -> None:
        """Close the channel with a protocol close code."""


class RateLimiter:
    """A token bucket: `rate` frames a second on average, bursts of `burst`. Excess frames are dropped."""

    def __init__(self, rate: float, burst: float = 3.0, clock=time.monotonic):
        self.clock = clock
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, clock()

    def set_rate(self, rate: float) -> None:
        self.rate = rate

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(eq=False)
class Participant:
    user_id: str
    display_name: str
    slot: int
    nonce: str                          # ties a join token to this reservation
    reserved_at: float
    is_host: bool = False
    outbox: Outbox = field(default_factory=Outbox)
    channel: DataChannel | None = None
    limiter: RateLimiter | None = None
    chat_limiter: RateLimiter | None = None
    last_key: bytes | None = None       # this participant's latest key frame and delta, for late joiners
    last_delta: bytes | None = None
    away_since: float | None = None     # its channel dropped without a close: its place is kept for a while
    jtis: set[str] = field(default_factory=set)    # the ids of every token it joined or resumed with
    worker: str | None = None           # connected through another process (Redis): that process's id
    avatar: str = ""                    # a photo avatar's name (pages draw it); empty: the cartoon

    @property
    def remote(self) -> bool:
        return self.worker is not None

    @property
    def online(self) -> bool:
        """Connected here or through another process."""
        return self.channel is not None or self.worker is not None

    @property
    def connected(self) -> bool:
        return self.channel is not None

    @property
    def away(self) -> bool:
        return self.away_since is not None

    def send(self, message: bytes) -> None:
        """Queue an ordered message; close the channel if the receiver has fallen too far behind."""
        if self.outbox.put(message):
            self._wake()
        elif self.outbox.overflowed and self.channel is not None:
            self.channel.close(4013, "too slow: ordered messages piled up")

    def send_pose(self, sender: int, frame: bytes, key: bool) -> None:
        if self.outbox.put_pose(sender, frame, key):
            self._wake()

    def _wake(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.notify()
