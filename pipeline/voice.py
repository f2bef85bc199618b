"""The host's voice in the room: Opus packets paced in real time, with the mouth track kept in step."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pipeline.audio import OpusEncoder
from pipeline.frames import MouthTrack, SpeechAudio
from wire import protocol as p

log = logging.getLogger(__name__)


class HostVoice:
    """Plays queued sentences one after another. Each packet leaves when its audio is due, so the first
    sound goes out as soon as the first sentence is synthesized, and the POSE frames the host sends in the
    meantime carry the mouth for the audio being sent: both arrive in step at every page."""

    def __init__(self, send: Callable[[bytes], None], slot: int, bitrate: int = 24000, frame_ms: int = 20,
                 max_queue: int = 16):
        self.send, self.slot = send, slot
        self.bitrate, self.frame_ms = min(bitrate, 32000), frame_ms
        self.queue: asyncio.Queue = asyncio.Queue(max_queue)
        self.speaking = False
        self._track: MouthTrack | None = None
        self._t0 = 0.0
        self._utterance_ms = 0
        self._seq = 0
        self._task: asyncio.Task | None = None
        self.first_packet_at: float | None = None      # monotonic time the current utterance's sound left
        self.on_state: Callable[[bool], None] = lambda speaking: None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def say(self, audio: SpeechAudio, track: MouthTrack) -> None:
        await self.queue.put((audio, track))

    async def end_utterance(self) -> None:
        """Everything of this answer is queued: AUDIO_END follows its last packet."""
        await self.queue.put(None)

    def mouth_now(self) -> dict[str, float]:
        if not self.speaking or self._track is None:
            return {}
        return self._track.at(time.monotonic() - self._t0)

    def interrupt(self) -> bool:
        """Barge-in: drop what is queued, stop the current sentence, tell the pages to drop theirs."""
        while not self.queue.empty():
            self.queue.get_nowait()
        was = self.speaking
        if self._task is not None:
            self._task.cancel()
            self._task = asyncio.get_running_loop().create_task(self._run())
        if was:
            self._finish(p.AudioEnd.INTERRUPTED)
        return was

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                if self.speaking:
                    self._finish(p.AudioEnd.FINISHED)
                continue
            try:
                await self._play(*item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("host voice failed on a sentence")

    async def _play(self, audio: SpeechAudio, track: MouthTrack) -> None:
        """Encode each packet just before it is due (the first leaves at once) and send it."""
        encoder = OpusEncoder(audio.sample_rate, self.bitrate, self.frame_ms)
        if not self.speaking:
            self.speaking, self._utterance_ms = True, 0
            self.first_packet_at = None
            self.on_state(True)
        start = time.monotonic()
        self._track, self._t0 = track, start
        step, n = self.frame_ms / 1000.0, int(audio.sample_rate * self.frame_ms / 1000)
        slices = [audio.pcm[i:i + n] for i in range(0, len(audio.pcm), n)]
        sent = 0
        for piece in slices + [None]:
            for packet in encoder.encode(piece) if piece is not None else encoder.flush():
                delay = start + sent * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.first_packet_at is None:
                    self.first_packet_at = time.monotonic()
                self.send(p.encode(p.Audio(self._seq, packet, self.slot, self._utterance_ms + sent * self.frame_ms)))
                self._seq = (self._seq + 1) & 0xFFFF
                sent += 1
        self._utterance_ms += sent * self.frame_ms
        rest = start + sent * step - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)

    def _finish(self, reason: p.AudioEnd) -> None:
        self.speaking, self._track = False, None
        self.send(p.encode(p.AudioStop(reason, self.slot)))
        self.on_state(False)
