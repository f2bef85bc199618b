"""The frames that flow through the pipeline: small, frozen, one per kind of thing that happens.

Audio inside the pipeline is mono float32 in [-1, 1] with its sample rate beside it. Times `t` are
`time.monotonic()` seconds; offsets inside an utterance are seconds from its start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class AudioIn:
    """A piece of a participant's microphone."""
    speaker: str
    pcm: np.ndarray
    sample_rate: int
    t: float


@dataclass(frozen=True)
class SpeechStarted:
    speaker: str
    t: float


@dataclass(frozen=True, eq=False)
class SpeechPaused:
    """The speaker has been silent for a moment (the VAD's post-roll): the utterance so far, exactly as its
    SpeechEnded will carry it if the silence lasts, so recognition can start before the end is certain."""
    speaker: str
    pcm: np.ndarray
    t_start: float
    t_end: float


@dataclass(frozen=True, eq=False)
class SpeechEnded:
    """One utterance, cut by the VAD: 16 kHz audio from its start to its end."""
    speaker: str
    pcm: np.ndarray
    t_start: float
    t_end: float


@dataclass(frozen=True)
class Transcript:
    speaker: str
    text: str
    language: str
    t: float
    source: str = "voice"          # "voice" or "chat"


@dataclass(frozen=True)
class LLMText:
    """A piece of the LLM's reply as it streams."""
    text: str


@dataclass(frozen=True)
class Sentence:
    text: str
    index: int
    last: bool = False


@dataclass(frozen=True)
class PhonemeTiming:
    phoneme: str                   # IPA, or "sil"
    start: float                   # seconds from the start of the SpeechAudio
    end: float


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float
    end: float


@dataclass(frozen=True, eq=False)
class SpeechAudio:
    """Synthesized speech for one sentence, with the timings the TTS gives (if any)."""
    pcm: np.ndarray
    sample_rate: int
    sentence: Sentence
    phonemes: tuple[PhonemeTiming, ...] = ()
    words: tuple[WordTiming, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True, eq=False)
class MouthTrack:
    """Mouth parameters sampled at `fps` from t=0 of a SpeechAudio: each array has one value per frame.
    Keys are PoseData field names: mouth_open, mouth_wide, mouth_round, jaw_open, smile."""
    fps: float
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def at(self, t: float) -> dict[str, float]:
        if not self.params:
            return {}
        n = len(next(iter(self.params.values())))
        i = min(max(int(t * self.fps), 0), n - 1)
        return {k: float(v[i]) for k, v in self.params.items()}


@dataclass(frozen=True)
class ErrorFrame:
    """A stage failed; the pipeline goes on. `message` is fit to show in the room."""
    stage: str
    message: str
