"""Helpers for tests of the AI host: a participant's microphone from a WAV, and what a listener hears and sees."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.audio import OpusDecoder, OpusEncoder
from tests.speech_util import espeak
from wire import protocol as p
from wire.posedata import PoseReceiver


def spoken(text: str, voice: str = "en", pad_s: float = 0.5) -> np.ndarray:
    """`text` said by espeak-ng, as 48 kHz float32 (a microphone's rate) with `pad_s` of silence each side."""
    pad = np.zeros(int(48000 * pad_s), np.float32)
    return np.concatenate([pad, espeak(text, voice, sr=48000), pad])


def until_end(watch, msg) -> bool:
    """For HostWatch.listen: stop at the host's AUDIO_END (the end of what it was saying)."""
    return isinstance(msg, p.AudioStop)


def send_microphone(client, pcm48k: np.ndarray, realtime: bool = True) -> float:
    """Send audio as a page does: 20 ms Opus packets, paced in real time. Returns when the speech ended."""
    encoder = OpusEncoder(48000, 24000, 20)
    packets = encoder.encode(pcm48k) + encoder.flush()
    start = time.monotonic()
    for seq, packet in enumerate(packets):
        if realtime:
            time.sleep(max(0.0, start + seq * 0.02 - time.monotonic()))
        client.send(p.Audio(seq, packet))
    return time.monotonic()


@dataclass
class HostWatch:
    """What one participant receives of the host: audio packets (arrival, loudness) and its mouth."""
    host_slot: int
    audio: list[tuple[float, float]] = field(default_factory=list)      # (arrival, RMS)
    mouth: list[tuple[float, float]] = field(default_factory=list)      # (arrival, mouth_open)
    ends: list[p.AudioStop] = field(default_factory=list)
    chats: list[str] = field(default_factory=list)
    statuses: list[p.HostStatus] = field(default_factory=list)

    def __post_init__(self):
        self._decoder, self._poses = OpusDecoder(), PoseReceiver()

    def take(self, msg) -> None:
        now = time.monotonic()
        if isinstance(msg, p.Audio) and msg.slot == self.host_slot:
            pcm = self._decoder.decode(msg.data)
            self.audio.append((now, float(np.sqrt(np.mean(pcm ** 2)))))
        elif isinstance(msg, p.Pose) and msg.slot == self.host_slot:
            pose = self._poses.read(msg.slot, msg.data)
            if pose is not None:
                self.mouth.append((now, pose["mouth_open"]))
        elif isinstance(msg, p.AudioStop) and msg.slot == self.host_slot:
            self.ends.append(msg)
        elif isinstance(msg, p.Chat) and msg.slot == self.host_slot:
            self.chats.append(msg.text)
        elif isinstance(msg, p.HostStatus):
            self.statuses.append(msg)

    def listen(self, client, seconds: float, until=None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = client.recv(min(0.5, max(0.01, deadline - time.monotonic())))
            if msg is not None:
                self.take(msg)
                if until is not None and until(self, msg):
                    return

    def mouth_when(self, loud: bool, threshold: float) -> float:
        """Mean mouth opening over the host's frames that arrived while its audio was (not) loud."""
        if not self.audio:
            return 0.0
        times = np.array([t for t, _ in self.audio])
        levels = np.array([r for _, r in self.audio])
        values = []
        for t, m in self.mouth:
            i = np.searchsorted(times, t)
            if 0 < i < len(times) and times[i] - times[i - 1] < 0.1:
                if (max(levels[i - 1], levels[i]) > threshold) == loud:
                    values.append(m)
        return float(np.mean(values)) if values else 0.0
