"""espeak-ng through ctypes on the system's libespeak-ng.so.1: offline, robotic, any language espeak has, with
per-phoneme IPA events. Chinese goes through pinyin (pypinyin) to the cmn-latn-pinyin voice, because Debian's
espeak-ng 1.51 cannot read Hanzi."""
from __future__ import annotations

import ctypes
import logging
import threading

import numpy as np

from pipeline.frames import PhonemeTiming
from pipeline.tts import PINYIN_VOICE, TTSEngine

log = logging.getLogger(__name__)

AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS, INIT_PHONEME_IPA = 0x1, 0x2
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
POS_CHARACTER, CHARS_UTF8 = 1, 1
PUNCTUATION = str.maketrans({"，": ", ", "。": ". ", "！": "! ", "？": "? ", "；": "; ", "：": ": ", "、": ", ",
                             "…": "... ", "（": " (", "）": ") ", "“": '"', "”": '"'})


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The library: initialised once per process. Its C API keeps global state, so every use holds `lock`."""

    lock = threading.Lock()
    _instance: _Espeak | None = None

    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as err:
            raise RuntimeError("espeak-ng is not installed (apt-get install libespeak-ng1 espeak-ng-data)") from err
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                      INIT_PHONEME_EVENTS | INIT_PHONEME_IPA)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self._pcm: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _Callback(self._on_synth)          # kept referenced: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _Espeak:
        with cls.lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_synth(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._pcm.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            if events[i].type == EVENT_PHONEME:
                name = events[i].id.string.decode("utf-8", "replace")
                self._events.append((name, events[i].audio_position))
            i += 1
        return 0

    def say(self, text: str, voice: str) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """int16 samples and (IPA phoneme, start ms) events for `text`, synthesized synchronously."""
        data = text.encode("utf-8")
        with self.lock:
            self._pcm, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"espeak_Synth returned {status}")
            pcm = np.concatenate(self._pcm) if self._pcm else np.zeros(0, np.int16)
            return pcm, list(self._events)


def to_pinyin(text: str) -> str:
    """Hanzi → tone-numbered pinyin ("大家好" → "da4 jia1 hao3"); other text and punctuation are kept."""
    from pypinyin import Style, lazy_pinyin
    return " ".join(" ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)).translate(PUNCTUATION)
                    .split())


def events_to_timings(events: list[tuple[str, int]], duration: float) -> list[PhonemeTiming]:
    """espeak's phoneme start events (ms) → timings that tile [0, duration]; unnamed events are pauses ("sil")."""
    out: list[PhonemeTiming] = []
    marks = [(name or "sil", ms / 1000.0) for name, ms in events] + [("sil", duration)]
    if marks[0][1] > 0:
        marks.insert(0, ("sil", 0.0))
    for (name, start), (_, end) in zip(marks, marks[1:]):
        end = min(end, duration)
        if end <= start:
            continue
        if name == "sil" and out and out[-1].phoneme == "sil":
            out[-1] = PhonemeTiming("sil", out[-1].start, end)
        else:
            out.append(PhonemeTiming(name, start, end))
    if out and out[-1].end < duration:
        out[-1] = PhonemeTiming(out[-1].phoneme, out[-1].start, duration)
    return out


class EspeakTTS(TTSEngine):
    """`voice` is an espeak-ng voice name ("en-us", "cmn-latn-pinyin" …). With the pinyin voice, Chinese text is
    converted to pinyin first. The library is process-wide: one synthesis at a time."""

    name = "espeak"

    def __init__(self, voice: str = "en-us"):
        self.voice = voice
        self.engine = _Espeak.get()
        self.sample_rate = self.engine.sample_rate

    def synthesize(self, text: str) -> tuple[np.ndarray, int, list[PhonemeTiming]]:
        if self.voice == PINYIN_VOICE:
            text = to_pinyin(text)
        pcm16, events = self.engine.say(text, self.voice)
        pcm = pcm16.astype(np.float32) / 32768.0
        return pcm, self.sample_rate, events_to_timings(events, len(pcm) / self.sample_rate)
