"""The AI host's speech out: LLM → sentences → TTS → lip-sync, with the real offline models (each loaded once)."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest

import config
from pipeline.context import ContextWindow, format_lines
from pipeline.frames import ErrorFrame, LLMText, PhonemeTiming, Sentence, SpeechAudio, Transcript, WordTiming
from pipeline.lipsync import LipSync, VisemeLipSync, make_lipsync
from pipeline.llm import LLMStage, LocalLlama, OpenAIChat, build_messages, make_llm
from pipeline.models import ModelRegistry
from pipeline.sentences import SentenceSplitter
from pipeline.transcript import Line
from pipeline.tts import make_tts
from pipeline.tts_edge import EdgeTTS
from pipeline.tts_espeak import EspeakTTS, to_pinyin
from pipeline.tts_piper import PiperTTS, fold_alignments

FPS = 30.0


def run(coro):
    return asyncio.run(coro)


async def collect(agen) -> list:
    return [item async for item in agen]


def report(what: str, **numbers: float) -> None:
    print(f"\n[timing] {what}: " + ", ".join(f"{k}={v:.3f}" for k, v in numbers.items()))


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    return config.load(dict(config.TESTING, MODEL_CACHE_DIR=str(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="session")
def registry():
    return ModelRegistry()


@pytest.fixture(scope="session")
def local_llm(settings, registry) -> LocalLlama:
    llm = make_llm(settings, registry)
    report("LLM load (SmolLM2-135M Q4_1)", seconds=registry.load_seconds["llm:local"])
    return llm


@pytest.fixture(scope="session")
def piper(settings, registry) -> PiperTTS:
    tts = make_tts(settings, "en", registry)
    report("Piper load (joe medium, alignment patch cached, warm-up)", seconds=next(
        v for k, v in registry.load_seconds.items() if k.startswith("tts:piper")))
    return tts


@pytest.fixture(scope="session")
def lipsync(settings, registry) -> LipSync:
    stage = make_lipsync(settings, registry, fps=FPS)
    report("AudioLipSync load (librosa warm-up)", seconds=registry.load_seconds[f"lipsync:audio:{FPS}"])
    return stage


@pytest.fixture(scope="session")
def hello(piper) -> SpeechAudio:
    text = "Hello everyone, welcome to the meeting."
    pcm, rate, phonemes = piper.synthesize(text)
    return SpeechAudio(pcm, rate, Sentence(text, 0), tuple(phonemes))


# -- LLM ---------------------------------------------------------------------------------------------------------------
def test_build_messages_per_language():
    lines = [Transcript("Bob", "Shall we start?", "en", 0.0), "Eve: " + "x" * 2000, "Ann: yes"]
    en = build_messages("What is next?", "en", "Ava", transcript=lines, agenda="1. Budget")
    assert en[0]["role"] == "system" and "Ava" in en[0]["content"] and "1. Budget" in en[0]["content"]
    assert "Ann: yes" in en[0]["content"] and "Eve:" not in en[0]["content"]        # too long: dropped
    assert en[-1] == {"role": "user", "content": "What is next?"}
    zh = build_messages("下一项是什么？", "zh", "小助手", transcript=["Bob: 开始吧"])
    assert "简体中文" in zh[0]["content"] and "小助手" in zh[0]["content"] and "Bob: 开始吧" in zh[0]["content"]


def said(n: int, chars: int = 20) -> list[Line]:
    return [Line(f"u{i % 3}", f"N{i % 3}", f"line {i} ".ljust(chars, "x"), float(i), "chat") for i in range(n)]


def test_context_window_grows_in_place_then_jumps_ahead():
    window, lines = ContextWindow(max_lines=5, max_chars=10_000, keep=2), said(12)
    assert window.select(lines[:3]) == lines[1:3]           # a start: the newest two
    assert window.select(lines[:6]) == lines[1:6]           # the same first line: the prompt grows at its end
    assert window.select(lines[:7]) == lines[5:7]           # full: it jumps ahead, keeping the newest two
    assert window.select(lines[:10]) == lines[5:10]
    assert window.select(lines[:11]) == lines[9:11]
    assert window.select([]) == [] and window.select(lines[:1]) == lines[:1]


def test_context_window_keeps_to_its_characters():
    window, lines = ContextWindow(max_lines=12, max_chars=100, keep=4), said(20, chars=30)
    assert window.select(lines[:2]) == lines[:2]            # "N0: line 0 xx…": 35 characters with its newline
    assert window.select(lines[:3]) == lines[1:3]           # three are 105: the oldest goes
    huge = [Line("u", "N", "x" * 500, 0.0, "chat")]
    assert window.select(huge) == []
    with pytest.raises(ValueError):
        ContextWindow(max_lines=3, keep=4)


def test_consecutive_prompts_extend_each_other():
    window, lines = ContextWindow(), said(40)
    prompts = [build_messages("What next?", "en", "AI", format_lines(window.select(lines[:n])))[0]["content"]
               for n in range(1, 41)]
    extended = sum(later.startswith(earlier) for earlier, later in zip(prompts, prompts[1:]))
    assert extended >= 30, extended                         # it jumps ahead only now and then


def test_local_llm_streams_an_answer(local_llm):
    async def ask():
        t0, first, deltas = time.monotonic(), None, []
        question = build_messages("Suggest a short agenda for a team stand-up meeting.")
        async for frame in LLMStage(local_llm, max_tokens=64).process(question):
            first = first or time.monotonic() - t0
            deltas.append(frame)
        return first, time.monotonic() - t0, deltas
    first, total, deltas = run(ask())
    assert all(isinstance(d, LLMText) for d in deltas), deltas
    assert len(deltas) >= 3 and "".join(d.text for d in deltas).strip()
    report("LLM answer", first_token_s=first, total_s=total, deltas=len(deltas),
           tokens_per_s=(len(deltas) - 1) / max(total - first, 1e-6))


def test_the_embedded_model_writes_at_the_configured_lower_priority(settings, local_llm):
    """The thread it writes on yields the CPU to speech and drawing: LLM_NICE."""
    def seen() -> tuple[int, int]:
        return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    tid, nice = local_llm._executor.submit(seen).result()
    assert tid != threading.get_native_id() and settings["LLM_NICE"] > 0
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings["LLM_NICE"])


def test_unreachable_endpoint_is_an_error_frame_then_local_still_works(settings, local_llm):
    timeout = settings["LLM_TIMEOUT"]
    remote = make_llm(settings.replace(LLM_BASE_URL="http://127.0.0.1:9/v1", LLM_MODEL="any"))
    assert isinstance(remote, OpenAIChat)
    t0 = time.monotonic()
    frames = run(collect(LLMStage(remote, timeout=timeout).process(build_messages("Hello?"))))
    elapsed = time.monotonic() - t0
    assert len(frames) == 1 and isinstance(frames[0], ErrorFrame) and frames[0].stage == "llm"
    assert "unreachable" in frames[0].message and "connect" in frames[0].message
    assert elapsed < timeout
    report("unreachable endpoint → ErrorFrame", seconds=elapsed)
    again = run(collect(LLMStage(local_llm).process(build_messages("Say hello to the team."))))
    assert again and all(isinstance(f, LLMText) for f in again)


def test_closing_the_stream_stops_generation(local_llm):
    async def interrupted():
        stage = LLMStage(local_llm, max_tokens=200)
        stream = stage.process(build_messages("Tell me a long story about a dragon and a castle."))
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
        t0 = time.monotonic()                   # the model's single thread must be free again at once
        after = await collect(LLMStage(local_llm, max_tokens=5).process(build_messages("Hi.")))
        return got, after, time.monotonic() - t0
    got, after, seconds = run(interrupted())
    assert all(isinstance(f, LLMText) for f in got + after) and after
    assert seconds < 5.0


def test_cancel_from_another_task(local_llm):
    async def barge_in():
        stage = LLMStage(local_llm, max_tokens=200)
        frames = []

        async def consume():
            async for frame in stage.process(build_messages("Describe the ocean in great detail.")):
                frames.append(frame)
                if len(frames) == 3:
                    stage.cancel()
        await asyncio.wait_for(consume(), 30)
        return frames
    assert len(run(barge_in())) <= 4


class _Silent:
    """A backend that never answers."""
    async def stream(self, messages, cancel, max_tokens=None):
        await asyncio.sleep(60)
        yield "never"

    def describe(self):
        return "silent test backend"


def test_a_model_that_never_answers_times_out():
    t0 = time.monotonic()
    frames = run(collect(LLMStage(_Silent(), timeout=0.3).process([])))
    assert [f.stage for f in frames] == ["llm"] and "no answer within 0.3 s" in frames[0].message
    assert time.monotonic() - t0 < 2


# -- sentences ---------------------------------------------------------------------------------------------------------
def split(text: str, step: int = 3) -> list[Sentence]:
    splitter, out = SentenceSplitter(), []
    for i in range(0, len(text), step):
        out += splitter.feed(text[i:i + step])
    return out + [splitter.flush()]


@pytest.mark.parametrize("text, expected", [
    ("Hello there! How are you? Fine.", ["Hello there!", "How are you?", "Fine."]),
    ("The rate is 3.5 percent, e.g. for Dr. Smith. J. Smith agrees.", ["The rate is 3.5 percent, e.g. for Dr. Smith.",
                                                                       "J. Smith agrees."]),
    ("Visit example.com today. Wait...\nNext line", ["Visit example.com today.", "Wait...", "Next line"]),
    ("**Agenda:**\n1. Budget\n2. Hiring", ["Agenda:", "Budget", "Hiring"]),
    ("大家好，欢迎参加今天的会议。我们先看议程！好吗？第一项；最后",
     ["大家好，欢迎参加今天的会议。", "我们先看议程！", "好吗？", "第一项；", "最后"]),
    ("Mixed 中文。English next. 好的", ["Mixed 中文。", "English next.", "好的"]),
    ("He said \"Stop.\" Then he left.", ["He said \"Stop.\"", "Then he left."]),
])
@pytest.mark.parametrize("step", [1, 4, 1000])
def test_sentence_splitting(text, expected, step):
    sentences = split(text, step)
    assert [s.text for s in sentences if s.text] == expected
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert [s.last for s in sentences] == [False] * (len(sentences) - 1) + [True]


def test_a_sentence_is_emitted_as_soon_as_it_ends():
    splitter = SentenceSplitter()
    assert splitter.feed("Good morning") == [] and splitter.feed(". ") == [Sentence("Good morning.", 0)]
    assert splitter.feed("你好。") == [] and splitter.feed("我") == [Sentence("你好。", 1)]   # one char to see closers
    assert splitter.flush() == Sentence("我", 2, last=True)


def test_long_runs_are_cut_at_a_comma_or_space():
    english = split("word " * 60 + "end")
    assert len(english) >= 2 and all(len(s.text) <= 160 for s in english)
    chinese = split("我们今天讨论预算和招聘计划，" * 12)
    assert len(chinese) >= 2 and all(s.text.endswith("，") for s in chinese[:-2])
    assert "".join(s.text for s in chinese) == "我们今天讨论预算和招聘计划，" * 12


def test_splitter_stage_passes_errors_and_marks_the_last_sentence():
    async def reply():
        yield LLMText("One. Two")
        yield ErrorFrame("llm", "broke")
    frames = run(collect(SentenceSplitter().sentences(reply())))
    assert frames == [Sentence("One.", 0), ErrorFrame("llm", "broke"), Sentence("Two", 1, last=True)]


# -- TTS ---------------------------------------------------------------------------------------------------------------
def test_piper_speaks_with_phoneme_timings_covering_the_audio(piper):
    sentence = Sentence("Please share your screen when you are ready, thank you.", 3)
    t0 = time.monotonic()
    frames = run(collect(piper.process(sentence)))
    seconds = time.monotonic() - t0
    (audio,) = frames
    assert isinstance(audio, SpeechAudio) and audio.sentence == sentence and audio.sample_rate == 22050
    assert audio.pcm.dtype == np.float32 and np.sqrt(np.mean(audio.pcm ** 2)) > 0.02
    ph = audio.phonemes
    assert len(ph) > 20 and ph[0].start == 0.0 and abs(ph[-1].end - audio.duration) < 1e-3
    assert all(abs(a.end - b.start) < 1e-6 for a, b in zip(ph, ph[1:]))          # contiguous
    assert not any(p.phoneme in ("ˈ", "ˌ", "ː") for p in ph)                       # stress folded
    report("Piper sentence", audio_s=audio.duration, synth_s=seconds, rtf=seconds / audio.duration)


def test_fold_alignments():
    timings = fold_alignments([("^", 10), ("h", 10), ("ˈ", 10), ("ɑ", 10), ("ː", 10), (" ", 10), (",", 10), ("$", 10)], 100)
    assert timings == [PhonemeTiming("sil", 0.0, 0.1), PhonemeTiming("h", 0.1, 0.2),
                       PhonemeTiming("ɑː", 0.2, 0.5), PhonemeTiming("sil", 0.5, 0.8)]


def test_time_to_first_sentence_audio(local_llm, piper):
    async def speak():
        t0 = time.monotonic()
        stage, splitter = LLMStage(local_llm), SentenceSplitter()
        async for sentence in splitter.sentences(stage.process(build_messages("Welcome everyone to the meeting."))):
            if isinstance(sentence, Sentence) and sentence.text:
                async for audio in piper.process(sentence):
                    return audio, time.monotonic() - t0
    audio, seconds = run(speak())
    assert isinstance(audio, SpeechAudio) and audio.duration > 0.3
    report("question → first sentence audio (LLM + split + Piper)", seconds=seconds, audio_s=audio.duration)


def test_espeak_speaks_chinese_through_pinyin():
    assert to_pinyin("大家好，欢迎参加今天的会议。") == "da4 jia1 hao3 , huan1 ying2 can1 jia1 jin1 tian1 de5 hui4 yi4 ."
    tts = EspeakTTS("cmn-latn-pinyin")
    t0 = time.monotonic()
    (audio,) = run(collect(tts.process(Sentence("大家好，欢迎参加今天的会议。", 0))))
    seconds = time.monotonic() - t0
    assert isinstance(audio, SpeechAudio) and audio.duration > 1.5
    assert np.sqrt(np.mean(audio.pcm ** 2)) > 0.02
    names = [p.phoneme for p in audio.phonemes if p.phoneme != "sil"]
    assert len(names) >= 20 and "tɕ" in names
    assert abs(audio.phonemes[-1].end - audio.duration) < 1e-3
    report("espeak zh sentence", audio_s=audio.duration, synth_s=seconds)


def test_edge_tts_offline_is_a_clear_error_quickly():
    t0 = time.monotonic()
    frames = run(collect(EdgeTTS("en-US-AriaNeural").process(Sentence("Hello there.", 0))))
    seconds = time.monotonic() - t0
    assert len(frames) == 1 and seconds < 10
    if isinstance(frames[0], SpeechAudio):                          # a machine with network
        assert frames[0].words and frames[0].duration > 0.3
    else:
        assert frames[0].stage == "tts" and frames[0].message.startswith("edge-tts needs network")
    report("edge-tts offline → ErrorFrame", seconds=seconds)


def test_empty_last_sentence_still_makes_audio(piper):
    (audio,) = run(collect(piper.process(Sentence("", 4, last=True))))
    assert audio.duration == 0 and audio.sentence.last


def test_make_tts_picks_the_engine(settings, registry, piper):
    assert make_tts(settings, "en", registry) is piper
    zh = make_tts(settings, "zh", registry)
    assert isinstance(zh, EspeakTTS) and zh.voice == "cmn-latn-pinyin"
    assert isinstance(make_tts(settings.replace(TTS_ENGINE="espeak"), "en"), EspeakTTS)
    edge = make_tts(settings.replace(TTS_ENGINE="edge"), "zh")
    assert isinstance(edge, EdgeTTS) and edge.voice == settings["EDGE_VOICE_ZH"]
    with pytest.raises(config.SettingsError, match="AVATAR_TTS_ENGINE='nope': must be one of piper, espeak, edge"):
        settings.replace(TTS_ENGINE="nope")


# -- lip-sync ----------------------------------------------------------------------------------------------------------
def padded(audio: SpeechAudio, pad: float = 0.3) -> SpeechAudio:
    """The audio with `pad` seconds of silence before and after, timings shifted to match."""
    n = int(pad * audio.sample_rate)
    pcm = np.concatenate([np.zeros(n, np.float32), audio.pcm, np.zeros(n, np.float32)])
    shift = n / audio.sample_rate
    phonemes = [PhonemeTiming("sil", 0.0, shift)] + [PhonemeTiming(p.phoneme, p.start + shift, p.end + shift)
                                                    for p in audio.phonemes]
    phonemes.append(PhonemeTiming("sil", phonemes[-1].end, len(pcm) / audio.sample_rate))
    return SpeechAudio(pcm, audio.sample_rate, audio.sentence, tuple(phonemes))


def loudness(audio: SpeechAudio, n: int, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """RMS per frame [i/fps, (i+1)/fps), linear and in dB (floored at -60 dB)."""
    hop = audio.sample_rate / fps
    rms = np.array([np.sqrt(np.mean(audio.pcm[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n)])
    return rms, np.maximum(20 * np.log10(rms), -60.0)


def best_lag(mouth: np.ndarray, env: np.ndarray, fps: float = FPS, max_lag: float = 0.2) -> tuple[float, float]:
    """(seconds the mouth lags the sound, correlation there), peak refined by a parabola between frames."""
    k_max = int(round(max_lag * fps))
    ks = range(-k_max, k_max + 1)
    corr = np.array([np.corrcoef(mouth[k:], env[:len(env) - k])[0, 1] if k >= 0 else
                     np.corrcoef(mouth[:k], env[-k:])[0, 1] for k in ks])
    i = int(np.argmax(corr))
    offset = 0.0
    if 0 < i < len(corr) - 1 and (den := corr[i - 1] - 2 * corr[i] + corr[i + 1]) != 0:
        offset = 0.5 * (corr[i - 1] - corr[i + 1]) / den
    return (i - k_max + offset) / fps, float(corr[i])


@pytest.mark.parametrize("model", ["visemes", "audio"])
def test_mouth_follows_the_loudness_and_rests_in_silence(model, hello, lipsync):
    mouth_model = VisemeLipSync(FPS) if model == "visemes" else lipsync.fallback
    t0 = time.monotonic()
    track = mouth_model.track(hello)
    seconds = time.monotonic() - t0
    mouth = track.params["mouth_open"]
    n = len(mouth)
    assert n == int(np.ceil(hello.duration * FPS))
    assert set(track.params) == {"mouth_open", "mouth_wide", "mouth_round", "jaw_open"}
    assert all(len(v) == n and 0.0 <= v.min() and v.max() <= 1.0 for v in track.params.values())
    rms, db = loudness(hello, n)
    lag_db, corr_db = best_lag(mouth, db)
    lag_lin, corr_lin = best_lag(mouth, rms)
    report(f"lip-sync {model}", compute_s=seconds, audio_s=hello.duration, lag_ms=lag_db * 1000, corr_db=corr_db,
           lag_linear_ms=lag_lin * 1000, corr_linear=corr_lin)
    assert abs(lag_db) <= 0.040 and corr_db > 0.3
    assert abs(lag_lin) <= 0.060 and corr_lin > 0.15
    assert mouth.max() > 0.6
    rest = mouth_model.track(padded(hello, 0.3)).params["mouth_open"]
    quiet = int(0.25 * FPS)                                  # whole frames inside the 0.3 s of silence
    assert rest[:quiet].max() < 0.15 and rest[-quiet:].max() < 0.15
    assert rest[quiet:-quiet].max() > 0.6


def test_word_timings_drive_the_mouth():
    pcm = np.zeros(24000, np.float32)
    words = (WordTiming("Hello,", 0.1, 0.45), WordTiming("world", 0.5, 0.8), WordTiming("大家", 0.85, 0.95))
    track = VisemeLipSync(FPS).track(SpeechAudio(pcm, 24000, Sentence("Hello, world 大家", 0), words=words))
    mouth = track.params["mouth_open"]
    assert len(mouth) == 30 and mouth[5:14].max() > 0.5 and mouth[:2].max() < 0.15 and mouth[-2:].max() < 0.15


def test_lipsync_stage_pairs_audio_with_a_track(hello, lipsync):
    async def go():
        bare = SpeechAudio(hello.pcm, hello.sample_rate, hello.sentence)          # no timings: audio fallback
        empty = SpeechAudio(np.zeros(0, np.float32), 22050, Sentence("", 1, last=True))
        return [item for audio in (hello, bare, empty, ErrorFrame("tts", "x")) async for item in lipsync.process(audio)]
    (a, ta), (b, tb), (c, tc), err = run(go())
    assert a is hello and b.phonemes == () and c.duration == 0 and err == ErrorFrame("tts", "x")
    assert len(ta.params["mouth_open"]) == len(tb.params["mouth_open"]) == int(np.ceil(hello.duration * FPS))
    assert not np.allclose(ta.params["mouth_open"], tb.params["mouth_open"])     # visemes, then the audio path
    assert tc.params == {} and tc.at(0.0) == {} and ta.at(0.5)["mouth_open"] >= 0


# -- Wav2Lip (a stand-in ONNX graph with Wav2Lip's signature) --------------------------------------------------------
@pytest.fixture(scope="session")
def fake_wav2lip(tmp_path_factory) -> str:
    """face (B,6,96,96), audio (B,1,80,16) → the reference half of the face, brightened by the mean mel value."""
    import onnx
    from onnx import TensorProto, helper
    nodes = [
        helper.make_node("Slice", ["face", "starts", "ends", "axes"], ["ref"]),
        helper.make_node("ReduceMean", ["audio"], ["level"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["level", "gain"], ["shift"]),
        helper.make_node("Add", ["ref", "shift"], ["sum"]),
        helper.make_node("Sigmoid", ["sum"], ["out"]),
    ]
    inits = [helper.make_tensor("starts", TensorProto.INT64, [1], [3]), helper.make_tensor("ends", TensorProto.INT64,
             [1], [6]), helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("gain", TensorProto.FLOAT, [], [0.01])]
    graph = helper.make_graph(nodes, "wav2lip_stub",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", 1, 80, 16]),
                               helper.make_tensor_value_info("face", TensorProto.FLOAT, ["B", 6, 96, 96])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 3, 96, 96])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("wav2lip") / "wav2lip_stub.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_wav2lip_onnx_renders_one_face_per_frame(fake_wav2lip, hello, settings, registry, lipsync):
    from pipeline.wav2lip import Wav2LipOnnx, mel_windows, melspectrogram
    mel = melspectrogram(np.zeros(16000, np.float32), 16000)
    assert mel.shape == (80, 81) and mel_windows(mel, 25, 25.0).shape == (25, 1, 80, 16)
    model = Wav2LipOnnx(fake_wav2lip, fps=25.0, batch=4)
    t0 = time.monotonic()
    frames, openness = model.render(hello.pcm, hello.sample_rate)
    seconds = time.monotonic() - t0
    n = int(np.ceil(hello.duration * 25.0))
    assert frames.shape == (n, 96, 96, 3) and frames.dtype == np.uint8 and openness.shape == (n,)
    assert 0 <= openness.min() and openness.max() <= 1
    report("Wav2Lip stub render", frames=n, seconds=seconds)
    stage = make_lipsync(settings.replace(WAV2LIP_MODEL=str(fake_wav2lip)), registry, fps=FPS)
    assert isinstance(stage.primary, Wav2LipOnnx)
    ((audio, track),) = run(collect(stage.process(hello)))
    assert audio is hello and len(track.params["mouth_open"]) == int(np.ceil(hello.duration * FPS))


def test_wav2lip_rejects_other_models(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "x.onnx"))
    from pipeline.wav2lip import Wav2LipOnnx
    with pytest.raises(ValueError, match="not a Wav2Lip model"):
        Wav2LipOnnx(str(tmp_path / "x.onnx"))
