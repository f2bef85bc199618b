"""edge-tts: Microsoft Edge's online neural voices (good Chinese), with word timings. Needs network; offline it fails
within `connect_timeout` seconds with a clear ErrorFrame."""
from __future__ import annotations

import asyncio
import io
import logging

import numpy as np

from pipeline.frames import Sentence, SpeechAudio, WordTiming
from pipeline.tts import TTSEngine

log = logging.getLogger(__name__)

TICKS_PER_SECOND = 10_000_000              # edge-tts offsets and durations are in 100-ns units


def decode_mp3(data: bytes, sample_rate: int = 24000) -> np.ndarray:
    """MP3 bytes → mono float32 at `sample_rate` (PyAV)."""
    import av
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(data), format="mp3") as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class EdgeTTS(TTSEngine):
    """`voice` like "en-US-AriaNeural" or "zh-CN-XiaoxiaoNeural". `connect_timeout` bounds the wait for the service;
    `total_timeout` the whole sentence."""

    name = "edge-tts"
    sample_rate = 24000

    def __init__(self, voice: str, connect_timeout: int = 5, total_timeout: float = 30.0):
        self.voice, self.connect_timeout, self.total_timeout = voice, connect_timeout, total_timeout

    async def speak(self, sentence: Sentence) -> SpeechAudio:
        import edge_tts
        communicate = edge_tts.Communicate(sentence.text, self.voice, boundary="WordBoundary",
                                           connect_timeout=self.connect_timeout, receive_timeout=self.connect_timeout)
        mp3, words = bytearray(), []
        async with asyncio.timeout(self.total_timeout):
            async for chunk in communicate.stream():
                if chunk["type"] == "audio":
                    mp3 += chunk["data"]
                elif chunk["type"] == "WordBoundary":
                    start = chunk["offset"] / TICKS_PER_SECOND
                    words.append(WordTiming(chunk["text"], start, start + chunk["duration"] / TICKS_PER_SECOND))
        pcm = await asyncio.to_thread(decode_mp3, bytes(mp3), self.sample_rate)
        return SpeechAudio(pcm, self.sample_rate, sentence, words=tuple(words))

    def error_message(self, err: Exception) -> str:
        import aiohttp
        if isinstance(err, TimeoutError):
            reason = f"no answer from the service within {self.connect_timeout} s"
        elif isinstance(err, aiohttp.ClientConnectorError):
            reason = f"cannot reach {err.host} ({err.os_error.strerror or err.os_error})"
        elif isinstance(err, OSError | aiohttp.ClientError):
            reason = f"cannot reach the service ({type(err).__name__}: {str(err)[:100]})"
        else:
            return f"edge-tts failed ({type(err).__name__}: {str(err)[:120]})."
        return f"edge-tts needs network: {reason}. Set TTS_ENGINE=piper for offline speech."
