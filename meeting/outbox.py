"""A receiver's bounded queue. Pose frames are latest-wins per sender; everything else keeps its order.

A transport drains it from its own writer, never on the sender's thread, so a slow or stuck receiver
costs the room nothing: its pose frames are replaced, and if its ordered messages pile up past the bound
the transport closes it (nothing ordered is ever dropped silently).
"""
from __future__ import annotations

import threading
from collections import deque


class Outbox:
    def __init__(self, max_ordered: int = 256):
        self.max_ordered = max_ordered
        self._lock = threading.Lock()
        self._ordered: deque[bytes] = deque()
        self._poses: dict[int, list] = {}          # sender slot -> [unsent key frame or None, latest frame]
        self._empty = True
        self.dropped_poses = 0                     # pose frames replaced by a newer one before they left
        self.sent = 0                              # messages handed to the transport
        self.overflowed = False

    def put_pose(self, sender: int, frame: bytes, key: bool) -> bool:
        """Queue a pose frame, replacing the sender's unsent one. An unsent key frame survives a newer
        delta (the delta needs it). Returns True when the outbox was empty before (wake the writer)."""
        with self._lock:
            slot = self._poses.get(sender)
            if slot is None:
                self._poses[sender] = [frame, None] if key else [None, frame]
            elif key:
                self.dropped_poses += (slot[0] is not None) + (slot[1] is not None)
                slot[0], slot[1] = frame, None
            else:
                self.dropped_poses += slot[1] is not None
                slot[1] = frame
            was_empty, self._empty = self._empty, False
            return was_empty

    def put(self, message: bytes) -> bool:
        """Queue a message that must arrive in order. Past the bound, `overflowed` is set instead."""
        with self._lock:
            if len(self._ordered) >= self.max_ordered:
                self.overflowed = True
                return False
            self._ordered.append(message)
            was_empty, self._empty = self._empty, False
            return was_empty

    def drain(self, ordered: bool = True, poses: bool = True) -> list[bytes]:
        """What is queued: ordered messages first, then each sender's pose frames (a transport with a channel for
        each may take them apart; what it leaves stays queued, poses still latest-wins)."""
        with self._lock:
            if self._empty:
                return []
            out = []
            if ordered:
                out += self._ordered
                self._ordered.clear()
            if poses:
                for key, latest in self._poses.values():
                    if key is not None:
                        out.append(key)
                    if latest is not None:
                        out.append(latest)
                self._poses.clear()
            self._empty = not self._ordered and not self._poses
            self.sent += len(out)
            return out

    def take_ordered(self) -> list[bytes]:
        """Take the ordered messages out (to send them after others), and forget an overflow."""
        with self._lock:
            out = list(self._ordered)
            self._ordered.clear()
            self.overflowed = False
            self._empty = not self._poses
            return out

    @property
    def ordered_waiting(self) -> int:
        return len(self._ordered)
