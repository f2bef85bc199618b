"""Text to speech: one `Sentence` in, its `SpeechAudio` (mono float32, with phoneme or word timings) out.

Engines: `PiperTTS` (pipeline.tts_piper, English, offline, per-phoneme alignments), `EspeakTTS` (pipeline.tts_espeak,
offline, robotic; Chinese through pinyin), `EdgeTTS` (pipeline.tts_edge, needs network, word timings).
`make_tts(settings, language)` picks one. Every engine yields exactly one `SpeechAudio` per sentence, also for an
empty sentence (zero samples, so the reply's `last=True` marker always reaches the audio sender), or one
`ErrorFrame("tts", …)`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from config import Settings
from pipeline.frames import ErrorFrame, PhonemeTiming, Sentence, SpeechAudio

log = logging.getLogger(__name__)

PINYIN_VOICE = "cmn-latn-pinyin"


class TTSEngine:
    """The shared stage: empty sentences, errors, and the blocking `synthesize()` run off the loop (in asyncio's
    default threads). Subclasses implement
    `synthesize(text) -> (pcm float32, sample_rate, phoneme timings)`; async engines override `speak()` instead."""

    name = "tts"
    sample_rate = 22050

    async def process(self, sentence: Sentence) -> AsyncIterator[SpeechAudio | ErrorFrame]:
        if not sentence.text.strip():
            yield SpeechAudio(np.zeros(0, np.float32), self.sample_rate, sentence)
            return
        try:
            audio = await self.speak(sentence)
        except Exception as err:
            log.warning("%s failed on sentence %d: %s: %s", self.name, sentence.index, type(err).__name__, err)
            log.debug("%s failure", self.name, exc_info=True)
            yield ErrorFrame("tts", self.error_message(err))
            return
        yield audio

    async def speak(self, sentence: Sentence) -> SpeechAudio:
        pcm, sample_rate, phonemes = await asyncio.to_thread(self.synthesize, sentence.text)
        return SpeechAudio(pcm, sample_rate, sentence, phonemes=tuple(phonemes))

    def synthesize(self, text: str) -> tuple[np.ndarray, int, list[PhonemeTiming]]:
        raise NotImplementedError

    def error_message(self, err: Exception) -> str:
        return f"Speech synthesis failed ({self.name}: {type(err).__name__}: {str(err)[:120]})."


def make_tts(settings: Settings, language: str = "en", registry: Any = None) -> TTSEngine:
    """The engine for a room's language. "zh": espeak-ng through pinyin, or edge-tts when TTS_ENGINE is "edge".
    "en": TTS_ENGINE ("piper" by default, "espeak" or "edge"); TTS_VOICE_EN names a Piper .onnx or an espeak voice.
    Piper loads once through `registry` (a blocking second or two: call this from a worker thread)."""
    engine = settings["TTS_ENGINE"]
    if engine == "edge":
        from pipeline.tts_edge import EdgeTTS
        return EdgeTTS(settings["EDGE_VOICE_ZH"] if language == "zh" else settings["EDGE_VOICE_EN"])
    from pipeline.tts_espeak import EspeakTTS
    if language == "zh":
        return EspeakTTS(PINYIN_VOICE)
    if engine == "espeak":
        return EspeakTTS(settings["TTS_VOICE_EN"] or "en-us")
    from pipeline.tts_piper import load_piper
    voice = settings["TTS_VOICE_EN"]
    cache = settings["MODEL_CACHE_DIR"]
    if registry is None:
        return load_piper(voice, cache, settings["TTS_THREADS"])
    return registry.get(f"tts:piper:{voice or 'joe'}", lambda: load_piper(voice, cache, settings["TTS_THREADS"]),
                        "speech voice")
