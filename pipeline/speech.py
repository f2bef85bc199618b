"""A room's speech chain: it hears (Opus → VAD → ASR) and it speaks (LLM → sentences → TTS → lip-sync → voice).

Models come from the runtime's registry (loaded once per process); the chain itself is per room, so each
room keeps its own VAD state and language. Each stage's time is recorded per turn (`TurnTimes`).
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from pipeline.asr import WhisperASR
from pipeline.audio import AudioError, OpusDecoder
from pipeline.frames import AudioIn, ErrorFrame, Sentence, SpeechAudio, SpeechEnded, SpeechPaused, SpeechStarted, Transcript
from pipeline.lipsync import make_lipsync
from pipeline.llm import LLMStage, make_llm
from pipeline.models import on_load
from pipeline.runtime import HostRuntime
from pipeline.sentences import SentenceSplitter
from pipeline.tts import make_tts
from pipeline.vad import VAD_KEY, VADStream, load_silero_session
from pipeline.voice import HostVoice

log = logging.getLogger(__name__)
MIC_RATE = 48000
FIRST_CLAUSE = 10           # characters: a reply's first clause (or first few words) is spoken on its own
MAX_SENTENCES = 4           # a reply is cut after this many sentences (small models do not stop by themselves)
_SPEAKER_PREFIX = re.compile(r"^\s*[\w .'-]{1,24}:\s+")    # "Alice: …", the transcript's format leaking back
ZH_WHAT = {"voice activity model": "语音检测模型", "voice": "语音", "lip-sync": "口型同步",
           "language model": "语言模型", "speech model": "语音识别模型"}


@dataclass
class TurnTimes:
    """When each stage of one answer finished (time.monotonic()); `heard` is the chat's arrival or the end
    of the spoken question, `end_detected` when the VAD was sure that it had ended."""
    source: str
    heard: float
    end_detected: float | None = None
    asr_done: float | None = None
    llm_first_token: float | None = None
    first_sentence: float | None = None
    tts_done: float | None = None
    lipsync_done: float | None = None
    first_audio: float | None = None

    def as_json(self) -> dict:
        """Milliseconds from `heard` to each stage, and each stage's own share."""
        out: dict = {"source": self.source, "heard_at": self.heard}
        previous = self.heard
        for f in fields(self)[2:]:
            t = getattr(self, f.name)
            out[f"{f.name}_ms"] = None if t is None else round((t - self.heard) * 1000, 1)
            if t is not None:
                out[f"{f.name}_stage_ms"] = round((t - previous) * 1000, 1)
                previous = t
        return out


class _NamePrefix:
    """Holds a reply's first characters back until it is clear whether they are a "Name:" prefix (the
    transcript's format leaking into the answer), and drops the prefix if they are."""

    def __init__(self):
        self.head: str | None = ""

    def feed(self, text: str) -> str:
        if self.head is None:
            return text
        self.head += text
        head = self.head
        undecided = len(head) < 12 if ":" not in head else not re.search(r":\s+\S", head)
        return "" if undecided and len(head) < 26 and "\n" not in head else self.flush()

    def flush(self) -> str:
        head, self.head = self.head or "", None
        return _SPEAKER_PREFIX.sub("", head, count=1)


class HostSpeech:
    def __init__(self, runtime: HostRuntime, language: str):
        self.rt, self.language = runtime, language
        self.settings = runtime.settings
        self.vad_session = None
        self.asr: WhisperASR | None = None
        self.llm = None
        self.tts = None
        self.lipsync = None
        self._streams: dict[str, VADStream] = {}
        self._decoders: dict[str, OpusDecoder] = {}
        self._guesses: dict[str, tuple[SpeechPaused, asyncio.Task]] = {}    # speaker → (pause, its ASR)

    # --- models -------------------------------------------------------------------------------

    async def load(self, progress: Callable[[str], None]) -> None:
        """Load what this room needs, telling `progress` (on the event loop) what loads, when it really loads."""
        reg, s, loop = self.rt.models, self.settings, asyncio.get_running_loop()
        steps = [
            ("voice activity model", lambda: reg.get(VAD_KEY, load_silero_session)),
            ("voice", lambda: make_tts(s, self.language, reg)),
            ("lip-sync", lambda: make_lipsync(s, reg)),
            ("language model", lambda: make_llm(s, reg)),
            ("speech model", lambda: WhisperASR.from_registry(reg, s, self.language)),
        ]

        def run(what: str, load: Callable):
            label = ZH_WHAT[what] if self.language == "zh" else what
            with on_load(lambda: loop.call_soon_threadsafe(progress, label)):
                return load()
        results = [await asyncio.to_thread(run, what, load) for what, load in steps]
        self.vad_session, self.tts, self.lipsync, self.llm, self.asr = results

    @property
    def ready(self) -> bool:
        return self.asr is not None

    # --- hearing ------------------------------------------------------------------------------

    def hear(self, speaker: str, packet: bytes) -> list[SpeechStarted | SpeechEnded]:
        """One Opus packet of a participant's microphone through the VAD (fast: under a millisecond).
        Call it on the host loop: a pause starts recognition at once (see `_guess`)."""
        if self.vad_session is None:
            return []                                   # still loading: nothing to listen with yet
        decoder = self._decoders.get(speaker)
        if decoder is None:
            decoder = self._decoders[speaker] = OpusDecoder()
        try:
            pcm = decoder.decode(packet)
        except AudioError:
            return []
        stream = self._streams.get(speaker)
        if stream is None:
            stream = self._streams[speaker] = VADStream(self.vad_session, speaker)
        frames = stream.feed_frame(AudioIn(speaker, pcm, MIC_RATE, time.monotonic() - len(pcm) / MIC_RATE))
        for paused in [f for f in frames if isinstance(f, SpeechPaused)]:
            self._guess(paused)
        return [f for f in frames if not isinstance(f, SpeechPaused)]

    def end_of_audio(self, speaker: str) -> list[SpeechEnded]:
        stream = self._streams.pop(speaker, None)
        self._decoders.pop(speaker, None)
        ended = [f for f in stream.finish() if isinstance(f, SpeechEnded)] if stream is not None else []
        if not ended:
            self._guesses.pop(speaker, None)
        return ended

    def _guess(self, paused: SpeechPaused) -> None:
        """Recognise the utterance so far as soon as its speaker pauses: if the silence lasts until the VAD
        ends the utterance (the rest of its silence rule), the audio is the same and the transcript is ready
        sooner; if the speaker goes on, the guess is dropped. One guess per speaker runs at a time."""
        running = self._guesses.get(paused.speaker)
        if self.asr is None or (running is not None and not running[1].done()):
            return
        task = asyncio.get_running_loop().create_task(self._recognise(paused))
        self._guesses[paused.speaker] = (paused, task)

    async def transcribe(self, utterance: SpeechEnded) -> Transcript | ErrorFrame | None:
        """The utterance's transcript: the guess made at its last pause when that had the same audio."""
        guess = self._guesses.pop(utterance.speaker, None)
        if guess is not None and np.array_equal(guess[0].pcm, utterance.pcm):
            return await guess[1]
        return await self._recognise(utterance)

    async def _recognise(self, utterance: SpeechEnded | SpeechPaused) -> Transcript | ErrorFrame | None:
        if self.asr is None:
            loading = "语音识别模型还在加载。" if self.language == "zh" else "The speech model is still loading."
            return ErrorFrame("asr", loading)
        async for frame in self.asr.process(utterance):
            return frame
        return None

    # --- speaking -----------------------------------------------------------------------------

    async def answer(self, messages: list[dict], voice: HostVoice, turn: TurnTimes,
                     keep: Callable[[str], bool] | None = None,
                     on_text: Callable[[str], None] | None = None) -> str | ErrorFrame:
        """Stream the LLM's reply and speak it sentence by sentence while it is still being written. With `keep`,
        only the sentences it keeps are said (and `keep.fallback` when it keeps none); `on_text` gets the reply's
        text as it is written (a "Name:" prefix dropped), up to where the reply is cut."""
        if self.llm is None:
            return ErrorFrame("llm", "语言模型还在加载，请稍后再问。" if self.language == "zh"
                              else "The language model is still loading: ask again in a moment.")
        stage = LLMStage(self.llm, self.settings["LLM_TIMEOUT"], self.settings["LLM_MAX_TOKENS"])
        splitter, sentences = SentenceSplitter(first_clause=FIRST_CLAUSE), asyncio.Queue()
        speaker = asyncio.create_task(self._speak(sentences, voice, turn))
        names, parts, spoken, kept = _NamePrefix(), [], 0, []

        def queue(found: list[Sentence]) -> None:
            for sentence in found:
                if not sentence.text.strip():
                    continue
                if keep is not None and not keep(sentence.text):
                    log.info("dropped an unsupported sentence: %r", sentence.text)
                    continue
                kept.append(sentence.text.strip())
                turn.first_sentence = turn.first_sentence or time.monotonic()
                sentences.put_nowait(sentence)

        try:
            async for frame in stage.process(messages):
                if isinstance(frame, ErrorFrame):
                    speaker.cancel()
                    await voice.end_utterance()           # what was already said ends properly (AUDIO_END)
                    return frame
                turn.llm_first_token = turn.llm_first_token or time.monotonic()
                text = names.feed(frame.text)
                parts.append(text)
                if on_text is not None and text:
                    on_text(text)
                found = splitter.feed(text)
                queue(found)
                spoken += len(found)
                if spoken >= MAX_SENTENCES:
                    break                             # enough: the unfinished rest is not spoken
            else:
                rest = names.flush()
                parts.append(rest)
                if on_text is not None and rest:
                    on_text(rest)
                queue(splitter.feed(rest) + [splitter.flush()])
            if keep is not None and not kept:
                queue([Sentence(keep.fallback, 0, last=True)])
            sentences.put_nowait(None)
            await speaker
            await voice.end_utterance()
        finally:
            stage.cancel()
            speaker.cancel()
        turn.first_audio = voice.first_packet_at
        return " ".join(kept) if keep is not None else "".join(parts).strip()

    async def say(self, text: str, voice: HostVoice, turn: TurnTimes | None = None) -> None:
        """Speak a text that is already whole (agenda, summary)."""
        splitter, sentences = SentenceSplitter(), asyncio.Queue()
        for sentence in splitter.feed(text) + [splitter.flush()]:
            if sentence.text.strip():
                sentences.put_nowait(sentence)
        sentences.put_nowait(None)
        if turn is not None:
            turn.first_sentence = time.monotonic()
        await self._speak(sentences, voice, turn)
        await voice.end_utterance()
        if turn is not None:
            turn.first_audio = voice.first_packet_at

    async def _speak(self, sentences: asyncio.Queue, voice: HostVoice, turn: TurnTimes | None) -> None:
        while (sentence := await sentences.get()) is not None:
            audio = await self._synthesize(sentence)
            if audio is None:
                continue
            if turn is not None and turn.tts_done is None:
                turn.tts_done = time.monotonic()
            async for result in self.lipsync.process(audio):
                if isinstance(result, ErrorFrame):
                    continue                                # logged; the sentence is said with a still mouth
                if turn is not None and turn.lipsync_done is None:
                    turn.lipsync_done = time.monotonic()
                await voice.say(*result)

    async def _synthesize(self, sentence: Sentence) -> SpeechAudio | None:
        if self.tts is None:
            return None
        async for frame in self.tts.process(sentence):
            if isinstance(frame, ErrorFrame):
                log.warning("tts: %s", frame.message)
                return None
            return frame if frame.duration > 0 else None
        return None
