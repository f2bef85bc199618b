"""Mouth movement in sync with the host's speech: one `MouthTrack` (mouth_open, mouth_wide, mouth_round, jaw_open
in 0..1, one value per frame at `fps`, frame i covering [i/fps, (i+1)/fps) of the audio) per `SpeechAudio`.

* `VisemeLipSync`: the TTS's phoneme timings (IPA) or word timings → openfacefx viseme curves → mouth shapes.
* `AudioLipSync`: no timings → the audio itself (loudness → open/jaw, spectral centroid → wide/round).
* `Wav2LipOnnx` (pipeline.wav2lip): a Wav2Lip ONNX model when WAV2LIP_MODEL is set.

The stage is `LipSync.process(audio)`: it yields one `(SpeechAudio, MouthTrack)` pair per audio, always; when the
mouth cannot be computed it yields an `ErrorFrame("lipsync", …)` first and then the audio with an empty track, so
speech never waits on the mouth.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np

from config import Settings
from pipeline.frames import ErrorFrame, MouthTrack, PhonemeTiming, Sentence, SpeechAudio, WordTiming

log = logging.getLogger(__name__)

MOUTH_KEYS = ("mouth_open", "mouth_wide", "mouth_round", "jaw_open")
# Oculus viseme → (mouth_open, mouth_wide, mouth_round, jaw_open)
VISEME_SHAPES: dict[str, tuple[float, float, float, float]] = {
    "sil": (0.00, 0.00, 0.00, 0.00),   # rest, closed
    "PP": (0.00, 0.00, 0.10, 0.00),    # p b m: lips pressed
    "FF": (0.12, 0.25, 0.00, 0.08),    # f v: lower lip to the teeth, slight
    "TH": (0.18, 0.20, 0.00, 0.12),    # th: tongue between the teeth, slight
    "DD": (0.30, 0.25, 0.00, 0.22),    # t d l
    "kk": (0.35, 0.15, 0.00, 0.28),    # k g h
    "CH": (0.22, 0.00, 0.60, 0.15),    # ch sh: protruded
    "SS": (0.12, 0.55, 0.00, 0.06),    # s z: teeth close, spread
    "nn": (0.22, 0.15, 0.00, 0.15),    # n ng
    "RR": (0.28, 0.00, 0.45, 0.20),    # r er
    "aa": (0.95, 0.45, 0.00, 0.90),    # a: open, wide jaw
    "E": (0.60, 0.70, 0.00, 0.45),     # e: mid, spread
    "I": (0.35, 0.95, 0.00, 0.22),     # i: wide
    "O": (0.70, 0.00, 0.80, 0.55),     # o: round, open
    "U": (0.30, 0.00, 1.00, 0.18),     # u w: tight round
}


def frame_count(duration: float, fps: float) -> int:
    return max(1, math.ceil(duration * fps - 1e-6)) if duration > 0 else 0


def empty_track(audio: SpeechAudio, fps: float) -> MouthTrack:
    """A closed mouth for the whole audio; no parameters at all for empty audio (so `MouthTrack.at()` gives {})."""
    n = frame_count(audio.duration, fps)
    return MouthTrack(fps, {k: np.zeros(n, np.float32) for k in MOUTH_KEYS} if n else {})


class MouthModel(Protocol):
    def track(self, audio: SpeechAudio) -> MouthTrack: ...


class VisemeLipSync:
    """Timings → openfacefx's coarticulated Oculus-15 viseme weights → mouth shapes (`VISEME_SHAPES`).
    IPA goes through openfacefx's IPA preset (it knows ə, ɚ, oʊ … which `from_ipa` sends to silence); symbols it
    doesn't know, like espeak's pinyin finals "iɑ", "uei", are split into known parts sharing the time."""

    LEAD = 0.3                         # openfacefx's coarticulation spans × this: its defaults (0.4 s ahead, 0.45 s
                                       # behind) smear the mouth over whole words and keep it open in pauses
    REST_AFTER = 0.06                  # seconds for the mouth to close in a real pause

    def __init__(self, fps: float = 30.0):
        from openfacefx import G2P, CoartParams
        from openfacefx.ipa import IPA_MAPPING
        self.fps, self.mapping, self.g2p = fps, IPA_MAPPING, G2P()
        defaults = CoartParams()
        self.params = CoartParams(lead={k: (a * self.LEAD, b * self.LEAD) for k, (a, b) in defaults.lead.items()})
        self.short_silence = defaults.short_silence

    def track(self, audio: SpeechAudio) -> MouthTrack:
        if audio.phonemes:
            segments, mapping = self.ipa_segments(audio.phonemes), self.mapping
        elif audio.words:
            segments, mapping = self.word_segments(audio.words), None
        else:
            raise ValueError("no phoneme or word timings")
        return self.shapes(segments, mapping, audio.duration)

    def shapes(self, segments: list, mapping: Any, duration: float) -> MouthTrack:
        from openfacefx import build_viseme_curves
        from openfacefx.visemes import VISEMES
        times, weights = build_viseme_curves(segments, fps=self.fps * 2, mapping=mapping, params=self.params)
        n = frame_count(duration, self.fps)
        centres = (np.arange(n) + 0.5) / self.fps
        table = np.array([VISEME_SHAPES[v] for v in VISEMES], np.float32)
        shapes = np.clip(weights @ table, 0.0, 1.0)
        gate = self.rest_gate(segments, centres)
        params = {k: (gate * np.interp(centres, times, shapes[:, i], left=0.0, right=0.0)).astype(np.float32)
                  for i, k in enumerate(MOUTH_KEYS)}
        return MouthTrack(self.fps, params)

    def rest_gate(self, segments: list, t: np.ndarray) -> np.ndarray:
        """1 while speaking; in the leading and trailing silence and in pauses longer than openfacefx absorbs, it
        falls to 0 within `REST_AFTER` of the speech edge, so the mouth really closes there."""
        gate = np.ones_like(t)
        last = len(segments) - 1
        for i, s in enumerate(segments):
            if s.phoneme != "sil" or (0 < i < last and s.end - s.start < self.short_silence):
                continue
            inside = (t >= s.start) & (t < s.end)
            dist = np.full_like(t, np.inf)
            if i > 0:
                dist = np.minimum(dist, t - s.start)
            if i < last:
                dist = np.minimum(dist, s.end - t)
            gate[inside] = np.clip(1.0 - dist[inside] / self.REST_AFTER, 0.0, 1.0)
        if segments:
            gate[t >= segments[-1].end] = 0.0
        return gate

    def ipa_segments(self, phonemes: tuple[PhonemeTiming, ...]) -> list:
        from openfacefx import PhonemeSegment
        normalize = self.mapping.normalize
        segments = []
        for p in phonemes:
            parts = self._split(normalize(p.phoneme)) if p.phoneme != "sil" else ["sil"]
            step = (p.end - p.start) / len(parts)
            segments += [PhonemeSegment(ph, p.start + i * step, p.start + (i + 1) * step) for i, ph in enumerate(parts)]
        return segments

    def _split(self, symbol: str) -> list[str]:
        """Greedy longest match against the preset's symbols; "sil" for what stays unknown."""
        rows, parts, i = self.mapping.rows, [], 0
        while i < len(symbol):
            for j in range(len(symbol), i, -1):
                if symbol[i:j] in rows:
                    parts.append(symbol[i:j])
                    i = j
                    break
            else:
                i += 1
        return parts or ["sil"]

    def word_segments(self, words: tuple[WordTiming, ...]) -> list:
        """edge-tts word spans → phones from openfacefx's naive G2P spread over each word (Chinese characters,
        which it can't read, become an open-close syllable each)."""
        from openfacefx import NaiveAligner, PhonemeSegment
        segments, t = [], 0.0
        for w in words:
            if w.start > t:
                segments.append(PhonemeSegment("sil", t, w.start))
            phones = self.g2p.phrase(w.word) if w.word.isascii() else ["D", "AA"] * sum(c.isalpha() for c in w.word)
            if phones and w.end > w.start:
                for s in NaiveAligner().align(phones, total_duration=w.end - w.start):
                    segments.append(PhonemeSegment(s.phoneme, w.start + s.start, w.start + s.end))
            t = max(t, w.end)
        return segments or [PhonemeSegment("sil", 0.0, max(t, 0.01))]


class AudioLipSync:
    """The mouth from the sound: RMS loudness (dB below the utterance's peak) opens mouth and jaw; a bright sound
    (high spectral centroid: e, i, s) widens it, a dark one (o, u) rounds it. Uses librosa, whose first call
    compiles with numba: the constructor warms it up (seconds in a fresh venv), so load it once."""

    RANGE_DB = 32.0                    # the loudness span mapped onto closed … fully open
    FLOOR_DB = -55.0                   # absolute silence gate (dBFS)

    def __init__(self, fps: float = 30.0):
        import librosa
        self.fps, self.librosa = fps, librosa
        noise = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1
        self.track(SpeechAudio(noise, 22050, Sentence("", 0)))      # warm-up (numba JIT)

    def track(self, audio: SpeechAudio) -> MouthTrack:
        n = frame_count(audio.duration, self.fps)
        if n == 0:
            return empty_track(audio, self.fps)
        y, sr = audio.pcm.astype(np.float32), audio.sample_rate
        hop = max(1, int(sr / (self.fps * 2)))
        rms = self.librosa.feature.rms(y=y, frame_length=2 * hop, hop_length=hop, center=True)[0]
        centroid = self.librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=4 * hop, hop_length=hop, center=True)[0]
        times = np.arange(len(rms)) * hop / sr
        centres = (np.arange(n) + 0.5) / self.fps
        db = 20 * np.log10(np.interp(centres, times, rms) + 1e-9)
        peak = max(float(db.max()), -30.0)
        level = np.clip((db - (peak - self.RANGE_DB)) / self.RANGE_DB, 0.0, 1.0) * (db > self.FLOOR_DB)
        level = np.convolve(np.pad(level, 1, mode="edge"), np.ones(3) / 3, mode="valid")   # centred: no lag
        bright = np.interp(centres, times[: len(centroid)], centroid)
        wide = np.clip((bright - 1800.0) / 2200.0, 0.0, 1.0) * level
        round_ = np.clip((1800.0 - bright) / 1000.0, 0.0, 1.0) * level
        params = {"mouth_open": level, "mouth_wide": wide, "mouth_round": round_, "jaw_open": 0.85 * level}
        return MouthTrack(self.fps, {k: v.astype(np.float32) for k, v in params.items()})


class LipSync:
    """The stage. `primary` (visemes, or Wav2Lip) is tried first; when it can't (no timings) or fails, `fallback`
    (audio) takes over. The work runs in asyncio's default threads."""

    def __init__(self, primary: MouthModel, fallback: MouthModel | None = None, fps: float = 30.0):
        self.primary, self.fallback, self.fps = primary, fallback, fps

    def track(self, audio: SpeechAudio) -> MouthTrack:
        if audio.duration == 0:
            return empty_track(audio, self.fps)
        try:
            return self.primary.track(audio)
        except Exception as err:
            if self.fallback is None:
                raise
            log.debug("%s gave no mouth (%s); using %s", type(self.primary).__name__, err,
                      type(self.fallback).__name__)
            return self.fallback.track(audio)

    async def process(self, audio: SpeechAudio | ErrorFrame) -> AsyncIterator[tuple[SpeechAudio, MouthTrack] | ErrorFrame]:
        if isinstance(audio, ErrorFrame):
            yield audio
            return
        try:
            track = await asyncio.to_thread(self.track, audio)
        except Exception as err:
            log.warning("lip-sync failed on sentence %d: %s", audio.sentence.index if audio.sentence else -1, err)
            yield ErrorFrame("lipsync", f"The avatar's mouth could not follow this sentence ({type(err).__name__}).")
            track = empty_track(audio, self.fps)
        yield audio, track


def make_lipsync(settings: Settings, registry: Any = None, fps: float = 30.0) -> LipSync:
    """Visemes from timings, with the audio as fallback; with WAV2LIP_MODEL, Wav2Lip first. Loads librosa (and the
    ONNX model) once through `registry`: blocking, call from a worker thread."""
    def get(key: str, loader: Any, what: str) -> Any:
        return registry.get(key, loader, what) if registry is not None else loader()

    audio = get(f"lipsync:audio:{fps}", lambda: AudioLipSync(fps), "lip-sync")
    if settings["WAV2LIP_MODEL"]:
        from pipeline.wav2lip import Wav2LipOnnx
        path = settings["WAV2LIP_MODEL"]
        return LipSync(get(f"lipsync:wav2lip:{path}", lambda: Wav2LipOnnx(path, fps=fps), "Wav2Lip"), audio, fps)
    return LipSync(VisemeLipSync(fps), audio, fps)
