"""Speech in: Opus and resampling, Silero VAD on real (espeak-ng) speech, Whisper ASR with the bundled models.

The timing tests print what they measure. Here (2 cores shared with other jobs, load average 5-10): Silero VAD
0.3-0.85 ms per 32 ms chunk; tiny.en load 0.7-2.9 s, a 2.2 s utterance in 1.1-1.7 s (6 s at load 9); base
load+join 1.9-2.5 s, a 4.4 s utterance in 1.2-5.7 s. On an idle machine (offline-models README): 0.125 ms per
chunk, tiny.en RTF 0.06, base RTF 0.11.
"""
from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest

import config
import pipeline.asr
from pipeline.asr import WhisperASR, asr_key, clean_text, joined_base_dir, load_whisper, whisper_dir
from pipeline.audio import AudioError, OpusDecoder, OpusEncoder, Resampler, resample
from pipeline.frames import ErrorFrame, SpeechEnded, SpeechPaused, SpeechStarted, Transcript
from pipeline.models import ModelRegistry
from pipeline.vad import SileroVAD, VADParams, VADStream, load_silero_session
from tests.speech_util import SR, espeak, feed_timed, mic_frames, run_stage, silence, speech_bounds

AGENDA = "AI, what is on the agenda?"
SCHEDULE = "Please schedule the meeting for three o'clock tomorrow afternoon."


def tone(seconds: float, sr: int, hz: float = 440.0, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def aligned(ref: np.ndarray, out: np.ndarray, max_lag: int = 2000) -> np.ndarray:
    """`out` shifted by the lag (codec delay) that best matches `ref`, cut to ref's length."""
    n = len(ref) - max_lag
    lag = int(np.argmax(np.correlate(out[:n + max_lag], ref[:n], mode="valid")))
    return out[lag:lag + len(ref)]


# --- Opus and resampling ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, sr_in, bitrate, frame_ms", [
    ("tone", 48000, 24000, 20),
    ("speech", 16000, 24000, 60),
    ("speech", 16000, 32000, 20),
])
def test_opus_round_trip_keeps_the_signal(source, sr_in, bitrate, frame_ms):
    pcm = tone(1.0, sr_in) if source == "tone" else espeak(SCHEDULE)
    enc = OpusEncoder(sr_in, bitrate=bitrate, frame_ms=frame_ms)
    packets = [p for i in range(0, len(pcm), 333) for p in enc.encode(pcm[i:i + 333])] + enc.flush()
    dec = OpusDecoder()
    out = np.concatenate([dec.decode(p) for p in packets])
    ref = resample(pcm, sr_in, 48000)
    got = aligned(ref, out)
    assert len(out) >= len(ref)
    assert np.corrcoef(ref[:len(got)], got)[0, 1] > 0.9
    level_db = 20 * np.log10(np.sqrt(np.mean(got ** 2)) / np.sqrt(np.mean(ref[:len(got)] ** 2)))
    assert abs(level_db) < 3
    nominal = bitrate * frame_ms / 8000
    sizes = [len(p) for p in packets]
    assert max(sizes) <= 1.6 * nominal and np.mean(sizes) <= 1.15 * nominal
    assert len(packets) <= len(ref) / (48 * frame_ms) + 2   # whole frames plus the codec's look-ahead


def test_encoder_buffers_partial_frames_and_flush_pads():
    enc = OpusEncoder(48000, frame_ms=20)
    assert enc.encode(tone(0.01, 48000)) == []            # half a frame: buffered
    assert len(enc.encode(tone(0.015, 48000))) == 1       # 25 ms: one frame out, 5 ms kept
    assert len(enc.flush()) >= 1                          # the 5 ms, padded, then the look-ahead
    assert len(enc.encode(tone(0.04, 48000))) == 2        # a fresh stream after flush


def test_encoder_settings_are_checked():
    assert OpusEncoder(16000, bitrate=64000).bitrate == 32000
    with pytest.raises(ValueError):
        OpusEncoder(16000, frame_ms=30)


@pytest.mark.parametrize("packet", [b"", b"\xff\xff\xff", b"\x0b" + b"\xff" * 1500], ids=["empty", "bad-toc", "oversized"])
def test_corrupt_packet_raises_audio_error_and_decoder_recovers(packet):
    good = OpusEncoder(48000).encode(tone(0.02, 48000))
    dec = OpusDecoder()
    with pytest.raises(AudioError):
        dec.decode(packet)
    assert len(dec.decode(good[0])) == 960


def test_stereo_packets_are_down_mixed():
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format, codec.bit_rate = 48000, "stereo", "s16", 32000
    codec.open()
    left = (tone(0.02, 48000) * 32767).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(np.stack([left, left], axis=1).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate, frame.pts = 48000, 0
    packets = [bytes(p) for p in codec.encode(frame)] + [bytes(p) for p in codec.encode(None)]
    out = [OpusDecoder().decode(p) for p in packets[:1]]
    assert out[0].dtype == np.float32 and out[0].shape == (960,)


def test_resample_one_shot_and_streaming_agree():
    pcm = tone(1.0, 48000, hz=1000)
    once = resample(pcm, 48000, 16000)
    assert once.dtype == np.float32 and len(once) == 16000
    assert np.argmax(np.abs(np.fft.rfft(once))) == 1000    # 1 Hz bins: still 1 kHz
    rs = Resampler(48000, 16000)
    streamed = np.concatenate([rs.process(pcm[i:i + 960]) for i in range(0, len(pcm), 960)] + [rs.flush()])
    assert len(streamed) == len(once) and np.allclose(streamed, once, atol=1e-3)


# --- VAD -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def vad_session():
    return load_silero_session()


def utterances(outputs) -> list[tuple[SpeechStarted, SpeechEnded]]:
    """The outputs as (started, ended) pairs, checking that they alternate (pauses left out)."""
    frames = [f for _, f in outputs] if outputs and isinstance(outputs[0], tuple) else outputs
    frames = [f for f in frames if not isinstance(f, SpeechPaused)]
    assert [type(f) for f in frames] == [SpeechStarted, SpeechEnded] * (len(frames) // 2), frames
    return list(zip(frames[::2], frames[1::2]))


@pytest.mark.parametrize("sr", [16000, 48000])
def test_vad_finds_one_utterance_with_tight_boundaries(vad_session, sr):
    speech = espeak(AGENDA)
    start, end = speech_bounds(speech)
    pcm = np.concatenate([silence(1.0), speech, silence(1.0)])
    t0 = 100.0
    vad = SileroVAD(vad_session)
    outputs = asyncio.run(feed_timed(vad, mic_frames(resample(pcm, SR, sr), sr, t0=t0)))
    [(started, ended)] = utterances(outputs)
    true_start, true_end = t0 + 1.0 + start, t0 + 1.0 + end
    assert abs(started.t - true_start) <= 0.15 and abs(ended.t_start - true_start) <= 0.15
    assert abs(ended.t_end - true_end) <= 0.15
    assert outputs[0][0] - true_start <= 0.1               # onset known within 100 ms: fast barge-in
    assert len(ended.pcm) / SR >= ended.t_end - ended.t_start + 0.15   # pre-roll kept
    assert speech_bounds(ended.pcm)[0] >= 0.1                # ... so the first phoneme is whole
    assert vad.speaking == frozenset()
    vad.close()


@pytest.mark.parametrize("noise", ["silence", "low-noise", "hum"])
def test_vad_ignores_silence_and_noise(vad_session, noise):
    rng = np.random.default_rng(1)
    pcm = {"silence": silence(3.0), "low-noise": rng.normal(0, 0.003, 3 * SR).astype(np.float32),
           "hum": tone(3.0, SR, hz=50, level=0.01)}[noise]
    assert run_stage(SileroVAD(vad_session), mic_frames(pcm)) == []


def test_vad_two_sentences_with_a_gap_are_two_utterances(vad_session):
    a, b = espeak(AGENDA), espeak(SCHEDULE)
    pcm = np.concatenate([silence(0.5), a, silence(1.0), b, silence(1.0)])
    pairs = utterances(run_stage(SileroVAD(vad_session), mic_frames(pcm, t0=0.0)))
    assert len(pairs) == 2
    assert abs(pairs[1][0].t - (0.5 + len(a) / SR + 1.0 + speech_bounds(b)[0])) <= 0.15


def test_vad_cuts_long_utterances(vad_session):
    stream = VADStream(vad_session, "alice", VADParams(max_utterance_s=1.0))
    pcm = np.concatenate([silence(0.5), espeak(SCHEDULE), silence(1.0)])
    pairs = utterances(stream.feed(pcm, 0.0))
    assert len(pairs) >= 3
    assert all(ended.t_end - ended.t_start <= 1.05 for _, ended in pairs)
    assert any(a[1].t_end == b[0].t for a, b in zip(pairs, pairs[1:]))   # cut mid-speech: ends and restarts at once


def test_vad_pause_carries_the_audio_its_end_will_have(vad_session):
    a, b = espeak(AGENDA), espeak(SCHEDULE)
    a1, b0 = speech_bounds(a)[1], speech_bounds(b)[0]
    a, b = a[:int(a1 * SR)], b[int(b0 * SR):]          # a 200 ms pause between the two: shorter than an end
    pcm = np.concatenate([silence(0.5), a, silence(0.2), b, silence(1.0)])
    frames = VADStream(vad_session, "alice").feed(pcm, 0.0)
    assert [type(f) for f in frames if not isinstance(f, SpeechPaused)] == [SpeechStarted, SpeechEnded], frames
    pauses = [f for f in frames if isinstance(f, SpeechPaused)]
    ended = frames[-1]
    assert isinstance(ended, SpeechEnded) and isinstance(frames[-2], SpeechPaused), frames
    last = frames[-2]
    assert (last.t_start, last.t_end) == (ended.t_start, ended.t_end) and np.array_equal(last.pcm, ended.pcm)
    assert any(abs(p.t_end - (0.5 + a1)) <= 0.1 for p in pauses[:-1]), pauses       # the pause between them
    assert all(p.t_end < 0.5 + a1 + 0.1 for p in pauses[:-1])          # (and maybe the comma after "AI")


def test_vad_finish_ends_the_utterance_in_progress(vad_session):
    vad = SileroVAD(vad_session)
    speech = espeak(AGENDA)
    pcm = np.concatenate([silence(0.5), speech])

    async def go():
        out = [f for frame in mic_frames(pcm, t0=0.0) async for f in vad.process(frame)]
        return out + [f async for f in vad.finish("alice")] + [f async for f in vad.finish("nobody")]
    [(started, ended)] = utterances(asyncio.run(go()))
    assert abs(ended.t_end - (0.5 + speech_bounds(speech)[1])) <= 0.15 and not vad.speaking


def test_vad_keeps_each_speakers_state(vad_session):
    vad = SileroVAD(vad_session)
    alice = mic_frames(np.concatenate([silence(0.5), espeak(AGENDA), silence(1.0)]), speaker="alice")
    bob = mic_frames(silence(len(alice) * 0.02), speaker="bob")
    seen_speaking = set()

    async def go():
        out = []
        for a, b in zip(alice, bob):
            for frame in (a, b):
                out += [f async for f in vad.process(frame)]
            seen_speaking.update(vad.speaking)
        return out
    out = [f for f in asyncio.run(go()) if not isinstance(f, SpeechPaused)]
    assert [f.speaker for f in out] == ["alice", "alice"] and seen_speaking == {"alice"}
    assert set(vad.streams) == {"alice", "bob"}


def test_vad_failure_becomes_an_error_frame(vad_session):
    class Broken:
        def run(self, *args):
            raise RuntimeError("boom")
    frames = mic_frames(silence(0.1))
    out = run_stage(SileroVAD(Broken()), frames)
    assert out and all(f == ErrorFrame("vad", "voice detection failed") for f in out)


def test_vad_speed(vad_session, capsys):
    stream = VADStream(vad_session, "alice")
    pcm = np.concatenate([espeak(SCHEDULE), silence(1.0)] * 2)
    t = time.perf_counter()
    stream.feed(pcm, 0.0)
    per_chunk = (time.perf_counter() - t) / (len(pcm) / 512)
    with capsys.disabled():
        print(f"\n[timing] Silero VAD: {per_chunk * 1e3:.3f} ms per 32 ms chunk")
    assert per_chunk < 0.005


# --- ASR -------------------------------------------------------------------------------------------------------

def _timed_load(language: str, settings: dict):
    t = time.perf_counter()
    model = load_whisper(language, settings)
    return model, time.perf_counter() - t


@pytest.fixture(scope="session")
def tiny_en():
    return _timed_load("en", config.load())


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("model-cache")
    settings = config.load({"MODEL_CACHE_DIR": str(cache)})
    model, seconds = _timed_load("zh", settings)
    return cache, model, seconds


def test_asr_hears_agenda_with_tiny_en(vad_session, tiny_en, capsys):
    # espeak-ng's "en" voice: tiny.en mishears the robotic en-us voice's "agenda" as "again"
    pcm = np.concatenate([silence(0.5), espeak(AGENDA, voice="en"), silence(0.6)])
    [(_, ended)] = utterances(run_stage(SileroVAD(vad_session), mic_frames(pcm)))
    model, load_s = tiny_en
    asr = WhisperASR(model, "en")
    [transcript] = run_stage(asr, [ended])
    assert isinstance(transcript, Transcript) and "agenda" in transcript.text.lower()
    assert (transcript.speaker, transcript.language, transcript.t) == ("alice", "en", ended.t_end)
    with capsys.disabled():
        print(f"\n[timing] tiny.en: load {load_s:.2f} s, {len(ended.pcm) / SR:.2f} s utterance in "
              f"{asr.last_seconds:.2f} s: {transcript.text!r}")


def test_asr_skips_noise_and_short_blips(tiny_en):
    asr = WhisperASR(tiny_en[0], "en")
    noise = np.random.default_rng(2).normal(0, 0.003, SR).astype(np.float32)
    blip = tone(0.1, SR)
    frames = [SpeechEnded("alice", noise, 0.0, 1.0), SpeechEnded("alice", blip, 0.0, 0.1)]
    assert run_stage(asr, frames) == []


@pytest.mark.parametrize("raw, clean", [
    ("[BLANK_AUDIO]", ""), (" you", ""), ("You.", ""), ("Thanks for watching!", ""), ("(music) ♪", ""),
    ("*coughs* What is next?", "What is next?"), ("Hello [BLANK_AUDIO] everyone.", "Hello everyone."),
    ("下一项是什么？", "下一项是什么？"),
])
def test_clean_text_drops_noise(raw, clean):
    assert clean_text(raw) == clean


def test_asr_model_loads_once_through_the_registry(monkeypatch, tiny_en):
    calls = []
    monkeypatch.setattr(pipeline.asr, "load_whisper", lambda language, settings: calls.append(language) or tiny_en[0])
    registry = ModelRegistry()
    first, second = (WhisperASR.from_registry(registry, {}, lang) for lang in ("en-US", "en"))
    assert first.model is second.model and calls == ["en-US"] and registry.loaded("asr:en")
    assert first.language == "en"


def test_asr_failure_becomes_an_error_frame():
    class Broken:
        def transcribe(self, *args, **kwargs):
            raise RuntimeError("boom")
    out = run_stage(WhisperASR(Broken(), "en"), [SpeechEnded("alice", silence(1.0), 0.0, 1.0)])
    assert out == [ErrorFrame("asr", "speech recognition failed")]


def test_multilingual_base_is_joined_once_and_transcribes(base_cache, capsys):
    cache, model, load_s = base_cache
    bin_path = cache / "whisper-base" / "model.bin"
    assert bin_path.stat().st_size > 140e6
    mtime = bin_path.stat().st_mtime_ns
    assert joined_base_dir(cache) == bin_path.parent and bin_path.stat().st_mtime_ns == mtime   # reused
    asr = WhisperASR(model, "en")
    pcm = np.concatenate([silence(0.2), espeak(SCHEDULE), silence(0.2)])
    [transcript] = run_stage(asr, [SpeechEnded("bob", pcm, 0.0, len(pcm) / SR)])
    assert "meeting" in transcript.text.lower()
    with capsys.disabled():
        print(f"\n[timing] base (multilingual): load+join {load_s:.2f} s, {len(pcm) / SR:.2f} s utterance in "
              f"{asr.last_seconds:.2f} s: {transcript.text!r}")
    with open(bin_path, "r+b") as f:                        # a torn file is noticed by its size and joined again
        f.truncate(1000)
    joined_base_dir(cache)
    assert bin_path.stat().st_size > 140e6 and not list(bin_path.parent.glob("*.tmp"))


@pytest.mark.parametrize("language, key", [("en", "asr:en"), ("en-US", "asr:en"), ("zh", "asr:multi"), ("de", "asr:multi")])
def test_model_choice_by_language(language, key, tmp_path):
    assert asr_key(language) == key
    settings = config.load({"ASR_MODEL_EN": str(tmp_path / "en"), "ASR_MODEL_MULTI": str(tmp_path / "multi")})
    assert whisper_dir(language, settings) == tmp_path / key[4:]
    with pytest.raises(RuntimeError, match="no Whisper model"):
        load_whisper(language, settings)



# --- recognition that starts at a pause (HostSpeech) ---------------------------------------------------------

class CountingASR(WhisperASR):
    """The real tiny.en stage, counting its transcriptions."""
    def __init__(self, model):
        super().__init__(model, "en")
        self.calls = 0

    def transcribe(self, pcm16k):
        self.calls += 1
        return super().transcribe(pcm16k)


async def hear_in_real_time(speech, pcm16k: np.ndarray) -> list[SpeechEnded]:
    """`pcm16k` as 20 ms Opus packets through HostSpeech.hear, paced as a microphone sends them."""
    encoder = OpusEncoder(SR, 24000, 20)
    ended, start = [], time.monotonic()
    for seq, packet in enumerate(encoder.encode(pcm16k) + encoder.flush()):
        ended += [f for f in speech.hear("alice", packet) if isinstance(f, SpeechEnded)]
        await asyncio.sleep(max(0.0, start + (seq + 1) * 0.02 - time.monotonic()))
    return ended


@pytest.mark.parametrize("go_on", [False, True], ids=["pause-is-the-end", "speaker-goes-on"])
def test_recognition_starts_at_a_pause_and_is_used_only_for_the_same_audio(vad_session, tiny_en, go_on):
    from pipeline.runtime import HostRuntime
    from pipeline.speech import HostSpeech
    speech = HostSpeech(HostRuntime(config.load()), "en")
    speech.vad_session, speech.asr = vad_session, CountingASR(tiny_en[0])
    a = espeak("Please schedule the meeting.", voice="en")
    b = espeak("Three o'clock tomorrow afternoon.", voice="en")
    a, b = a[:int(speech_bounds(a)[1] * SR)], b[int(speech_bounds(b)[0] * SR):]
    pcm = np.concatenate([silence(0.4), a] + ([silence(0.15), b] if go_on else []) + [silence(0.8)])

    async def go():
        [ended] = await hear_in_real_time(speech, pcm)
        t0 = time.monotonic()
        result = await speech.transcribe(ended)
        waited = time.monotonic() - t0
        calls = speech.asr.calls
        fresh = await asyncio.to_thread(speech.asr.transcribe, ended.pcm)
        return result, waited, calls, fresh
    result, waited, calls, fresh = asyncio.run(go())
    assert isinstance(result, Transcript) and result.text == fresh          # the same words as without a guess
    assert "meeting" in result.text.lower()
    if go_on:
        assert "tomorrow" in result.text.lower()                            # the guess at the pause was not used
    else:
        assert calls == 1 and waited < speech.asr.last_seconds              # recognised before the end was sure
