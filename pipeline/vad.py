"""Voice activity detection: Silero VAD (its ONNX file, run by onnxruntime without torch) per speaker.

One onnxruntime session is shared by every stream (load it with `load_silero_session`, e.g. through the
ModelRegistry under VAD_KEY); each speaker has a `VADStream` with its own recurrent state and hysteresis.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import pathlib
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from pipeline.audio import Resampler
from pipeline.frames import AudioIn, ErrorFrame, SpeechEnded, SpeechPaused, SpeechStarted

log = logging.getLogger(__name__)

VAD_KEY = "vad"
SR = 16000
CHUNK = 512            # samples per model call at 16 kHz (32 ms)
CONTEXT = 64           # samples of the previous chunk the model sees again


def silero_onnx_path() -> pathlib.Path:
    """silero-vad's bundled ONNX model, found without importing `silero_vad` (which imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise RuntimeError("silero-vad is not installed")
    return pathlib.Path(spec.origin).parent / "data" / "silero_vad.onnx"


def load_silero_session(path: str | pathlib.Path | None = None) -> ort.InferenceSession:
    """The Silero VAD model as a one-thread onnxruntime session (safe to share between streams)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path or silero_onnx_path()), sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class VADParams:
    """Hysteresis: speech starts after `min_speech_ms` of chunks above `threshold` and ends after
    `min_silence_ms` of chunks below `neg_threshold` (chunks in between count as neither)."""
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: int = 64            # 2 chunks: onset is known ~64-96 ms after it happens
    min_silence_ms: int = 300
    pre_roll_ms: int = 200             # audio kept before the onset so the first phoneme isn't cut
    post_roll_ms: int = 100            # silence kept after the end
    max_utterance_s: float = 15.0      # a longer utterance is cut: SpeechEnded, then SpeechStarted again

    def chunks(self, ms: float) -> int:
        return max(1, math.ceil(ms * SR / 1000 / CHUNK))


class VADStream:
    """One speaker's VAD: feed it 16 kHz audio, get SpeechStarted / SpeechEnded frames, and a SpeechPaused
    once `post_roll_ms` of a silence have passed (its audio is the SpeechEnded's if the silence lasts).

    `SpeechEnded.pcm` starts up to `pre_roll_ms` before `t_start` (the detected onset) and runs until
    `post_roll_ms` after `t_end`. Times come from the sample count, anchored at the first frame's `t`
    (and re-anchored when the frame times jump ahead, e.g. after a gap in the audio).
    """

    def __init__(self, session: ort.InferenceSession, speaker: str, params: VADParams | None = None):
        self.session, self.speaker = session, speaker
        self.params = p = params or VADParams()
        self._start_chunks = p.chunks(p.min_speech_ms)
        self._end_chunks = p.chunks(p.min_silence_ms)
        self._pause_chunks = p.chunks(p.post_roll_ms)       # enough silence for the post-roll: SpeechPaused
        self._max_chunks = p.chunks(p.max_utterance_s * 1000)
        self._recent: deque[np.ndarray] = deque(maxlen=p.chunks(p.pre_roll_ms) + self._start_chunks)
        self.reset()

    def reset(self) -> None:
        """Forget everything: model state, pending audio and any utterance in progress."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, CONTEXT), np.float32)
        self._pending = np.zeros(0, np.float32)
        self._resampler: Resampler | None = None
        self._recent.clear()
        self._utt: list[np.ndarray] | None = None
        self._above = self._below = 0
        self._n = 0                    # samples stepped through the model so far
        self._onset = 0                # sample where the current utterance started
        self._t0: float | None = None  # time of sample 0

    @property
    def speaking(self) -> bool:
        return self._utt is not None

    def feed_frame(self, frame: AudioIn) -> list[SpeechStarted | SpeechEnded]:
        """`frame` at any rate: resampled to 16 kHz, then fed."""
        if frame.sample_rate != SR:
            if self._resampler is None or self._resampler.sr_in != frame.sample_rate:
                self._resampler = Resampler(frame.sample_rate, SR)
            pcm = self._resampler.process(frame.pcm)
        else:
            pcm = frame.pcm
        return self.feed(pcm, frame.t)

    def feed(self, pcm16k: np.ndarray, t: float) -> list[SpeechStarted | SpeechEnded]:
        """16 kHz float32 audio whose first sample is at time `t`."""
        expected = self._time(self._n + len(self._pending)) if self._t0 is not None else None
        if expected is None or t - expected > 0.25:
            self._t0 = t - (self._n + len(self._pending)) / SR
        x = np.concatenate([self._pending, np.asarray(pcm16k, np.float32).reshape(-1)])
        n = len(x) // CHUNK * CHUNK
        self._pending = x[n:]
        out: list[SpeechStarted | SpeechEnded] = []
        for i in range(0, n, CHUNK):
            out += self._step(x[i:i + CHUNK])
        return out

    def finish(self) -> list[SpeechEnded]:
        """The audio stopped (mic off, participant left): end the utterance in progress, if any, and reset."""
        out = []
        if self._utt is not None:
            self._utt.append(self._pending)
            self._n += len(self._pending)
            out.append(self._end(self._n - self._below * CHUNK, keep=self.params.post_roll_ms * SR // 1000))
        self.reset()
        return out

    def _time(self, sample: int) -> float:
        return self._t0 + sample / SR

    def _prob(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk[None, :]], axis=1)
        prob, self._state = self.session.run(None, {"input": x, "state": self._state, "sr": np.array(SR, np.int64)})
        self._context = x[:, -CONTEXT:]
        return float(prob[0, 0])

    def _step(self, chunk: np.ndarray) -> list[SpeechStarted | SpeechEnded]:
        p = self._prob(chunk)
        start = self._n
        self._n += CHUNK
        if self._utt is None:
            self._recent.append(chunk)
            self._above = self._above + 1 if p > self.params.threshold else 0
            if self._above < self._start_chunks:
                return []
            self._onset = start - (self._start_chunks - 1) * CHUNK
            self._utt = list(self._recent)
            self._recent.clear()
            self._above = self._below = 0
            return [SpeechStarted(self.speaker, self._time(self._onset))]
        self._utt.append(chunk)
        if p >= self.params.threshold:
            self._below = 0
        elif p < self.params.neg_threshold:
            self._below += 1
        if self._below >= self._end_chunks:
            return [self._end(self._n - self._below * CHUNK, keep=self.params.post_roll_ms * SR // 1000)]
        if self._below == self._pause_chunks:
            end = self._n - self._below * CHUNK
            return [SpeechPaused(self.speaker, self._cut(end, self.params.post_roll_ms * SR // 1000),
                                 self._time(self._onset), self._time(end))]
        if self._n - self._onset >= self._max_chunks * CHUNK:
            log.info("utterance of %s reached %.0f s: cut", self.speaker, self.params.max_utterance_s)
            ended = self._end(self._n, keep=0)
            self._onset, self._utt = self._n, []
            return [ended, SpeechStarted(self.speaker, ended.t_end)]
        return []

    def _cut(self, end_sample: int, keep: int) -> np.ndarray:
        """The utterance's audio up to `keep` samples after `end_sample`."""
        pcm = np.concatenate(self._utt)
        return pcm[:len(pcm) - (self._n - end_sample) + min(keep, self._n - end_sample)]

    def _end(self, end_sample: int, keep: int) -> SpeechEnded:
        ended = SpeechEnded(self.speaker, self._cut(end_sample, keep), self._time(self._onset), self._time(end_sample))
        self._utt = None
        self._below = 0
        return ended


class SileroVAD:
    """The VAD stage for a room: `process(AudioIn)` yields SpeechStarted / SpeechEnded per speaker.
    The model runs on one worker thread, so each stream's frames are handled in order."""

    def __init__(self, session: ort.InferenceSession, params: VADParams | None = None):
        self.session = session
        self.params = params or VADParams()
        self.streams: dict[str, VADStream] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")

    @property
    def speaking(self) -> frozenset[str]:
        """The speakers in the middle of an utterance (empty: nobody is speaking)."""
        return frozenset(s for s, stream in self.streams.items() if stream.speaking)

    def stream(self, speaker: str) -> VADStream:
        stream = self.streams.get(speaker)
        if stream is None:
            stream = self.streams[speaker] = VADStream(self.session, speaker, self.params)
        return stream

    def remove(self, speaker: str) -> None:
        """Forget a speaker who left (an utterance in progress is dropped)."""
        self.streams.pop(speaker, None)

    async def process(self, frame: AudioIn) -> AsyncIterator[SpeechStarted | SpeechEnded | ErrorFrame]:
        stream = self.stream(frame.speaker)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, stream.feed_frame, frame)
        except Exception:
            log.exception("VAD failed for %s", frame.speaker)
            stream.reset()
            yield ErrorFrame("vad", "voice detection failed")
            return
        for result in results:
            yield result

    async def finish(self, speaker: str) -> AsyncIterator[SpeechEnded]:
        """`speaker`'s audio stopped: yields the utterance in progress, if any (see VADStream.finish)."""
        stream = self.streams.get(speaker)
        if stream is not None:
            for ended in await asyncio.get_running_loop().run_in_executor(self._executor, stream.finish):
                yield ended

    def close(self) -> None:
        self._executor.shutdown(wait=False)
