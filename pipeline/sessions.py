"""One-to-one avatar sessions (docs/SESSIONS.md): a person talks with the AI through a photo avatar. A reply is the
room host's speech chain (HostSpeech.answer: LLM → sentences → TTS → lip-sync) with a sink that turns each sentence
into an MP4 of its own (avatars.say's Renderer and PhotoMotion, avatars.clip's encoder). No Flask here.

Where the work runs: a session's turn is a task on the host runtime's loop, as the rooms' hosts are; the LLM has its
own thread, TTS and lip-sync asyncio's threads, and drawing, encoding and Whisper this manager's small pool, so a
sentence being rendered (5-8 ms a frame) never holds the loop or the rooms' speech.
"""
from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import math
import os
import pathlib
import shutil
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np

from avatars.clip import ClipWriter, join_clips
from avatars.motion import PhotoMotion
from avatars.say import FPS, SIZE, Utterance, load_avatar
from meeting.errors import MeetingError
from pipeline.asr import SR, WhisperASR
from pipeline.audio import resample
from pipeline.chain import SpeakingChain
from pipeline.frames import ErrorFrame, MouthTrack, SpeechAudio
from pipeline.lipsync import make_lipsync
from pipeline.llm import make_llm
from pipeline.runtime import HostRuntime
from pipeline.speech import HostSpeech, TurnTimes
from pipeline.tts import make_tts

log = logging.getLogger(__name__)
try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:                                 # not glibc: nothing to trim
    _LIBC = None
RATE = 32000                                 # a chunk's audio: 1280 samples a video frame, 1024 an AAC frame …
PAD = math.lcm(RATE // FPS, 1024)            # … so 5120 samples (0.16 s) are whole frames of both
MIN_SPEECH = 0.3                             # seconds of audio below which nothing is transcribed (pipeline.asr)


class SessionNotFound(MeetingError):
    code = "session_not_found"


class NotAudio(MeetingError):
    code = "not_audio"


class AudioTooLarge(MeetingError):
    code = "audio_too_large"


class NoSpeech(MeetingError):
    code = "no_speech"


class ModelUnavailable(MeetingError):
    """A model failed to load or to answer; `code` says which (llm_unavailable, voice_unavailable)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- what a turn tells its listener (called on the host loop; must not block) -----------------------------

@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class Heard:
    text: str


@dataclass(frozen=True, eq=False)
class VideoChunk:
    text: str
    mp4: bytes
    seconds: float
    timing: dict = field(default_factory=dict)          # chunk_timing()


@dataclass(frozen=True)
class Done:
    text: str
    transcript: str | None
    media: bool                              # audio/latest and video/latest hold this reply
    timing: dict = field(default_factory=dict)          # turn_timing()


@dataclass(frozen=True)
class Interrupted:
    pass


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


@dataclass(frozen=True)
class SessionOptions:
    avatar: str                              # a stored avatar's name (avatars.store)
    language: str                            # "en" or "zh": the voice's, the prompt's and Whisper's
    voice: str                               # what speaks, in words (answers show it)
    llm: str                                 # the model's id (connect.chat.model_id)
    tts_settings: object = None              # the settings make_tts gets (EDGE_VOICE_* set), else the server's


def decode_audio(data: bytes, max_seconds: float) -> np.ndarray:
    """An audio file's bytes (WAV, WebM, Ogg, MP3: whatever FFmpeg recognises, probed, not trusted by name) →
    16 kHz mono float32 for Whisper. Raises NotAudio, or AudioTooLarge beyond `max_seconds`."""
    import av
    out, n = [], 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise NotAudio("no audio stream in it: send WAV, WebM, Ogg or MP3 audio")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
            for frame in [*container.decode(audio=0), None]:
                for piece in resampler.resample(frame):
                    out.append(piece.to_ndarray().reshape(-1))
                    n += piece.samples
                if n > max_seconds * SR:
                    raise AudioTooLarge(f"the audio is longer than {max_seconds:g} s (SESSION_MAX_AUDIO_SECONDS)")
    except av.error.FFmpegError as exc:
        raise NotAudio(f"not audio that could be decoded ({type(exc).__name__}): send WAV, WebM, Ogg or MP3") from None
    if not n:
        raise NotAudio("the audio has no samples")
    return np.concatenate(out).astype(np.float32, copy=False)


def whole_frames(audio: SpeechAudio) -> np.ndarray:
    """A sentence's speech as 16-bit PCM at RATE, padded with silence to whole video and AAC frames: its chunk's
    audio and picture then end together, and chunks played one after another leave no gap."""
    pcm = resample(audio.pcm, audio.sample_rate, RATE)
    padded = np.zeros(max(1, math.ceil(len(pcm) / PAD)) * PAD, np.int16)
    padded[:len(pcm)] = np.round(np.clip(pcm, -1.0, 1.0) * 32767)
    return padded


def _after(start: float, t: float | None) -> float | None:
    """Milliseconds from `start` to `t` (time.monotonic()); None for a stage that did not happen."""
    return None if t is None else round((t - start) * 1000, 1)


def chunk_timing(times: TurnTimes, tts_start: float, render_start: float, sent: float) -> dict:
    """A video chunk's `timing` (docs/SESSIONS.md): milliseconds from the turn's message to the LLM's first token,
    its first sentence and this chunk's sending; how long this chunk's speech (TTS and lip-sync) and its picture
    (drawing and encoding, with any wait for a render thread) took."""
    return {"llm_first_token_ms": _after(times.heard, times.llm_first_token),
            "first_sentence_ms": _after(times.heard, times.first_sentence),
            "tts_ms": _after(tts_start, render_start), "render_ms": _after(render_start, sent),
            "sent_ms": _after(times.heard, sent)}


def turn_timing(times: TurnTimes, chunks: list[dict], done: float) -> dict:
    """The whole turn's `timing`: the LLM's stages, the first chunk's sending, the chunks' TTS and rendering summed,
    the transcript's (audio turns) and when the reply was done (its whole WAV and MP4 written)."""
    return {"asr_ms": _after(times.heard, times.asr_done),
            "llm_first_token_ms": _after(times.heard, times.llm_first_token),
            "first_sentence_ms": _after(times.heard, times.first_sentence),
            "first_chunk_ms": chunks[0]["sent_ms"] if chunks else None, "chunks": len(chunks),
            "tts_ms": round(sum(c["tts_ms"] for c in chunks), 1),
            "render_ms": round(sum(c["render_ms"] for c in chunks), 1), "done_ms": _after(times.heard, done)}


class _Timed:
    """The session's voice (a pipeline.tts engine) noting when it starts on a sentence (HostSpeech speaks them one
    after another), so a chunk can say how long its speech took."""

    def __init__(self, tts):
        self.tts, self.started = tts, time.monotonic()

    def __getattr__(self, name: str):
        return getattr(self.tts, name)

    async def process(self, sentence):
        self.started = time.monotonic()
        async for frame in self.tts.process(sentence):
            yield frame


class _Chunks:
    """The reply's text as HostSpeech.answer writes it (its `on_text`), without the spaces at either end, so the
    chunks sent, joined, are exactly the reply's text."""

    def __init__(self, emit: Callable[[object], None] | None):
        self.emit, self.parts, self.held = emit, [], ""

    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, text: str) -> None:
        text = self.held + text
        text = text if self.parts else text.lstrip()
        body = text.rstrip()
        self.held = text[len(body):]
        if body:
            self.parts.append(body)
            if self.emit is not None:
                self.emit(TextChunk(body))


@dataclass
class _Turn:
    emit: Callable[[object], None]
    directory: pathlib.Path
    times: TurnTimes                                    # `heard`: when its message arrived
    cancel: threading.Event = field(default_factory=threading.Event)
    pieces: list = field(default_factory=list)          # (Utterance, chunk path)
    timings: list = field(default_factory=list)         # each chunk's chunk_timing()


class _Sink:
    """The session's end of the speaking chain (pipeline.chain.Sink, as the room's HostVoice): each sentence of
    the running turn becomes one MP4; interrupting stops the turn's drawing within a frame."""

    def __init__(self, session: Session):
        self.session = session
        self.turn: _Turn | None = None
        self.first_packet_at: float | None = None

    def begin(self, turn: _Turn) -> None:
        self.turn, self.first_packet_at = turn, None

    async def say(self, audio: SpeechAudio, track: MouthTrack) -> None:
        turn, spoken = self.turn, time.monotonic()
        piece = await self.session.run(self.session.render, audio, track, turn)
        if piece is not None:
            utterance, mp4 = piece
            sent = time.monotonic()
            self.first_packet_at = self.first_packet_at or sent
            turn.timings.append(chunk_timing(turn.times, self.session.speech.tts.started, spoken, sent))
            turn.emit(VideoChunk(utterance.text, mp4, utterance.frames / FPS, turn.timings[-1]))

    async def end_utterance(self) -> None:
        pass

    def interrupt(self) -> bool:
        if self.turn is None or self.turn.cancel.is_set():
            return False
        self.turn.cancel.set()
        return True


class Session:
    """One person's conversation: its avatar, voice, history, latest reply's files, and at most one turn running."""

    def __init__(self, session_id: str, options: SessionOptions, manager: SessionManager):
        self.id, self.options, self.manager = session_id, options, manager
        self.settings, self.runtime = manager.settings, manager.runtime
        self.created_at, self.last_used = time.time(), time.monotonic()
        self.directory = manager.directory / session_id
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.renderer = load_avatar(options.avatar, self.settings)
        self.motion = PhotoMotion(self.renderer.rig.rest_pose)
        self.speech = HostSpeech(self.runtime, options.language)
        self.sink = _Sink(self)
        self.chain = SpeakingChain(self.speech, self.sink)     # the room host's speaking path, into MP4 clips
        self.llm = self.asr = None
        self.history: list[dict] = []
        self.replies, self.turns, self.frames, self.disk_bytes = 0, 0, 0, 0
        self.ended: str | None = None                   # why: "deleted", "expired", "evicted", "shutdown"
        self.on_end: list[Callable[[str], None]] = []
        self._turn: _Turn | None = None
        self._render_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self.chain.busy

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def load(self) -> None:
        """The LLM, voice and lip-sync (once per process, through the runtime's registry; blocking)."""
        s, reg = self.settings, self.runtime.models
        try:
            self.llm = self.speech.llm = make_llm(s, reg)
        except Exception as exc:
            raise ModelUnavailable("llm_unavailable", f"The language model failed to load ({type(exc).__name__}: "
                                   f"{exc}).") from None
        try:
            self.speech.tts = _Timed(make_tts(self.options.tts_settings or s, self.options.language, reg))
            self.speech.lipsync = make_lipsync(s, reg, fps=FPS)
        except Exception as exc:
            raise ModelUnavailable("voice_unavailable", f"The voice failed to load ({type(exc).__name__}: "
                                   f"{exc}).") from None

    async def run(self, fn, *args):
        """`fn(*args)` in the manager's pool: drawing, encoding and Whisper stay off the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.manager.pool, fn, *args)

    async def turn(self, emit: Callable[[object], None], text: str | None = None, pcm16k: np.ndarray | None = None,
                   streaming: bool = True, received: float | None = None) -> Done:
        """Answer `text` (or the speech in `pcm16k`), telling `emit` as it goes. Run it as the chain's reply
        (SessionManager.submit): a turn still running is interrupted first, so the queue is one deep. `received`:
        when its message arrived (time.monotonic()), where its timing starts."""
        self.turns += 1
        times = TurnTimes("session", received or time.monotonic())
        turn = self._turn = _Turn(emit, self.directory / f"turn-{self.turns}", times)
        self.sink.begin(turn)
        self.touch()
        try:
            if self.llm is None or self.speech.tts is None or self.speech.lipsync is None:
                await asyncio.to_thread(self.load)
            if pcm16k is not None:
                text = await self.run(self._transcribe, pcm16k)
                times.asr_done = time.monotonic()
                emit(Heard(text))
            done = await self._reply(turn, text, streaming, pcm16k is not None)
            emit(done)
            return done
        except MeetingError as exc:
            emit(Failed(exc.code, exc.message))
            raise
        except Exception as exc:                        # a bug or a failed encoder: said, logged, this turn only
            log.exception("session %s: the turn failed", self.id)
            emit(Failed("internal_error", f"the reply failed ({type(exc).__name__})"))
            raise
        finally:
            turn.cancel.set()
            self.manager.pool.submit(self._discard, turn.directory)
            self.touch()

    async def _reply(self, turn: _Turn, text: str, streaming: bool, heard: bool) -> Done:
        chunks = _Chunks(turn.emit if streaming else None)
        turn.directory.mkdir()
        messages = self.manager.prompt(text, self.history, self.options.language)
        answer = await self.chain.answer(messages, turn.times, on_text=chunks.feed)
        if isinstance(answer, ErrorFrame):
            raise ModelUnavailable("llm_unavailable", answer.message)
        reply = chunks.text()
        media = bool(turn.pieces) and await self.run(self._finish, turn)
        self.replies += 1
        keep = self.settings.CHAT_MAX_HISTORY
        self.history = (self.history + [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
                        )[-keep:] if keep else []
        self.manager.over_budget(self)
        return Done(reply, text if heard else None, media, turn_timing(turn.times, turn.timings, time.monotonic()))

    def _transcribe(self, pcm16k: np.ndarray) -> str:
        if len(pcm16k) < MIN_SPEECH * SR:
            raise NoSpeech(f"the audio is shorter than {MIN_SPEECH} s: nothing to transcribe")
        if self.asr is None:
            self.asr = WhisperASR.from_registry(self.runtime.models, self.settings, self.options.language)
        text = self.asr.transcribe(pcm16k)
        if not text:
            raise NoSpeech("no speech was recognised in the audio")
        return text

    def render(self, audio: SpeechAudio, track: MouthTrack, turn: _Turn) -> tuple[Utterance, bytes] | None:
        """One sentence as an MP4 (H.264 + AAC, fast start): its frames drawn and encoded one by one, then the
        file's bytes. None when the turn was interrupted meanwhile (the drawing stops within a frame)."""
        pcm = whole_frames(audio)
        utterance = Utterance(audio.sentence.text.strip(), pcm, track, len(pcm) // (RATE // FPS), audio.duration,
                              time.monotonic())
        path = turn.directory / f"{len(turn.pieces):03d}.mp4"
        with self._render_lock:
            renderer = self.renderer
            if turn.cancel.is_set() or renderer is None:
                return None
            clip = ClipWriter(str(path), pcm, RATE, FPS, (SIZE, SIZE), self.settings.SESSION_X264_PRESET)
            try:
                for i in range(utterance.frames):
                    if turn.cancel.is_set():
                        clip.abort()
                        return None
                    clip.write_frame(renderer.render(self.motion.pose(self.frames / FPS, utterance.mouth(i))))
                    self.frames += 1
                clip.close()
            except BaseException:
                clip.abort()                            # no half file stays behind
                raise
            turn.pieces.append((utterance, path))
            return utterance, path.read_bytes()

    def _finish(self, turn: _Turn) -> bool:
        """The whole reply as latest.wav and latest.mp4 (the chunks' video copied, their audio encoded once)."""
        with self._render_lock:
            if turn.cancel.is_set():
                return False
            d = turn.directory
            pcm = np.concatenate([u.pcm for u, _ in turn.pieces])
            with wave.open(str(d / "reply.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(pcm.tobytes())
            join_clips([str(p) for _, p in turn.pieces], pcm, RATE, str(d / "reply.mp4"))
            (d / "reply.wav").replace(self.directory / "latest.wav")
            (d / "reply.mp4").replace(self.directory / "latest.mp4")
            self.disk_bytes = sum(f.stat().st_size for f in self.directory.glob("latest.*"))
            return True

    def _discard(self, directory: pathlib.Path) -> None:
        with self._render_lock:                         # after any sentence still being drawn for it
            shutil.rmtree(directory, ignore_errors=True)
        _trim_heap()

    def latest(self, kind: str) -> pathlib.Path | None:
        path = self.directory / f"latest.{kind}"
        return path if path.is_file() else None

    def end(self, reason: str) -> None:
        """Free everything at once: the turn (and a sentence being drawn), the socket, the files, the buffers."""
        self.ended = reason
        if self._turn is not None:
            self._turn.cancel.set()
        if self.runtime.loop is not None:               # (none yet: no turn has ever run)
            self.runtime.loop.call_soon_threadsafe(self.chain.interrupt)
        for callback in self.on_end:
            callback(reason)
        self.on_end.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.renderer, self.history = None, []
        log.info("session %s ended (%s)", self.id, reason)

    def bytes(self) -> int:
        """What it costs: its files and its avatar's renderer (about 4 MB)."""
        r = self.renderer
        return self.disk_bytes + (sum(v.nbytes for v in vars(r).values() if isinstance(v, np.ndarray)) if r else 0)


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim). A turn's encoders (x264's frame
    buffers, some 20 MB per render thread) are freed at its end, but glibc keeps freed memory in each thread's
    arena, so without this the process's RSS stays at its busiest."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class SessionManager:
    """Every session of the process: at most SESSION_MAX and SESSION_MAX_MB (least recently used ended first),
    each ended after SESSION_IDLE_SECONDS without use."""

    def __init__(self, settings, runtime: HostRuntime, prompt: Callable[[str, list, str], list[dict]]):
        self.settings, self.runtime, self.prompt = settings, runtime, prompt
        self._sessions: dict[str, Session] = {}
        self._lock, self._creating = threading.Lock(), threading.Lock()
        self._directory: pathlib.Path | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def directory(self) -> pathlib.Path:
        """This process's own directory in SESSION_DIR (workers may share it), else a private temporary one; made
        with the first session, removed by close()."""
        if self._directory is None:
            base = self.settings.SESSION_DIR
            base = pathlib.Path(base).expanduser() if base else pathlib.Path(tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            self._directory = pathlib.Path(tempfile.mkdtemp(prefix=f"avatar-sessions-{os.getpid()}-", dir=base))
        return self._directory

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.SESSION_RENDER_THREADS, thread_name_prefix="session-render")
        return self._pool

    def create(self, session_id: str, options: SessionOptions) -> tuple[Session, bool]:
        """(the session, True) made now, or (the one that has this id, False). The least recently used are
        ended first when SESSION_MAX are open; its models start loading in the background."""
        with self._creating:                            # one at a time: the avatar loads outside the main lock
            with self._lock:
                if session_id in self._sessions:
                    return self._sessions[session_id], False
            session = Session(session_id, options, self)
            with self._lock:
                evicted = []
                while len(self._sessions) >= self.settings.SESSION_MAX:
                    evicted.append(self._sessions.pop(min(self._sessions.values(), key=lambda s: s.last_used).id))
                self._sessions[session_id] = session
        for old in evicted:
            old.end("evicted")
        self._start_reaper()
        threading.Thread(target=_quietly(session.load), name="session-load", daemon=True).start()
        return session, True

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} (it ended, or never existed)")
        session.touch()
        return session

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def end(self, session_id: str, reason: str = "deleted") -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} (it ended, or never existed)")
        session.end(reason)

    def over_budget(self, keep: Session) -> None:
        """Ends the least recently used sessions (never `keep`) while all together cost over SESSION_MAX_MB."""
        limit = self.settings.SESSION_MAX_MB << 20
        while True:
            with self._lock:
                others = [s for s in self._sessions.values() if s is not keep]
                if not others or sum(s.bytes() for s in self._sessions.values()) <= limit:
                    return
                victim = self._sessions.pop(min(others, key=lambda s: s.last_used).id)
            victim.end("evicted")

    def submit(self, session: Session, emit: Callable[[object], None], **turn) -> Future:
        """Start a turn on the host loop from any thread, as the session's chain's reply (one at a time); the
        future's result is its Done (cancelled when a newer turn interrupts it)."""
        async def start():
            reply = session.chain.run(session.turn(emit, **turn))
            try:
                return await reply
            except asyncio.CancelledError:          # a newer turn, an interrupt, or the caller gave up: said here,
                if session.ended is None:           # as a turn cancelled before it began cannot say it itself
                    emit(Interrupted())
                raise
        return self.runtime.submit(start())

    def expire(self) -> None:
        """Ends the sessions unused (no request, no message, no turn running) for SESSION_IDLE_SECONDS."""
        cutoff = time.monotonic() - self.settings.SESSION_IDLE_SECONDS
        with self._lock:
            idle = [s for s in self._sessions.values() if s.last_used < cutoff and not s.busy]
            for s in idle:
                del self._sessions[s.id]
        for s in idle:
            s.end("expired")

    def close(self) -> None:
        self._stop.set()
        for session in self.sessions():
            self.end(session.id, "shutdown")
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        every = max(0.2, min(self.settings.SESSION_IDLE_SECONDS / 4, 15.0))
        while not self._stop.wait(every):
            try:
                self.expire()
            except Exception:
                log.exception("ending idle sessions failed")


def _quietly(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` for a background warm-up: a failure is reported by the turn that needs it, not here."""
    def run() -> None:
        with suppress(Exception):
            fn()
    return run
