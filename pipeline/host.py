"""The AI host: a participant in a room that hears it, answers when addressed, keeps the agenda, summarises.

It is a `RoomListener` (chat and microphone audio reach it from the sessions' threads) and a participant with
its own avatar (idle motion, blinks, and the mouth of whatever it is saying). Everything it does runs on the
process's one host loop (`HostRuntime`); model calls run in worker threads. A failure in a stage
becomes a message in the room, never a dead host.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from meeting.agenda import schedule
from meeting.participant import Participant
from meeting.room import JitsiRoom
from pipeline import facts, phrases
from pipeline.addressing import Addressing, Request
from pipeline.agenda import announcement
from pipeline.avatar_motion import IdleMotion
from pipeline.chain import SpeakingChain
from pipeline.context import ContextWindow, format_lines
from pipeline.frames import ErrorFrame, SpeechEnded, SpeechStarted
from pipeline.frames import Transcript as TranscriptFrame
from pipeline.llm import MAX_CONTEXT_CHARS, MAX_CONTEXT_LINES, build_messages
from pipeline.minutes import Minutes, meeting_record
from pipeline.runtime import HostRuntime
from pipeline.speech import HostSpeech, TurnTimes
from pipeline.transcript import Line, Transcript
from pipeline.voice import HostVoice
from wire import protocol as p
from wire.posedata import PoseStream

log = logging.getLogger(__name__)


class HostChannel:
    """The host's data channel: it needs nobody's frames, so whatever is queued for it is dropped."""
    transport = "host"

    def __init__(self, host: AIHost):
        self.host, self.outbox = host, None

    def bind(self, outbox) -> None:
        self.outbox = outbox

    def notify(self) -> None:
        self.outbox.drain()

    def close(self, code: int, reason: str) -> None:
        self.host.stop()


class AIHost:
    def __init__(self, room: JitsiRoom, runtime: HostRuntime, transcript: Transcript,
                 minutes_of: Callable[[str], Awaitable[Minutes]] | None = None):
        s = runtime.settings
        self.room, self.rt, self.transcript = room, runtime, transcript
        self.minutes_of = minutes_of
        self.context = ContextWindow(MAX_CONTEXT_LINES, MAX_CONTEXT_CHARS)   # the lines its prompts carry
        self.language = room.language
        self.name = s["HOST_NAME"]
        self.addressing = Addressing(self.name)
        self.agenda = schedule(room.agenda.items)
        self.member: Participant = room.reserve(s["HOST_USER_ID"], self.name, is_host=True, avatar=room.host_avatar)
        self.speech = HostSpeech(runtime, self.language)
        self.motion = IdleMotion()
        self.voice: HostVoice | None = None
        self.chain: SpeakingChain | None = None     # the speaking path into the voice: one reply at a time
        self.state = ("idle", "")
        self.turns: list[TurnTimes] = []           # the latest turns' per-stage times, newest last
        self.turn_count = 0                        # turns answered since the start (monitor.metrics reads these)
        self.failures = 0                          # answers and transcriptions that ended in an error
        self._tasks: list[asyncio.Task] = []
        self._agenda_next = 0
        self._humans = 0
        self._closed = False
        room.attach(self.member.user_id, self.member.nonce, HostChannel(self))
        room.listeners.append(self)

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.rt.submit(self._main()).add_done_callback(_log_failure)

    async def _main(self) -> None:
        self.voice = HostVoice(lambda m: self.room.broadcast(self.member, m), self.member.slot,
                               self.rt.settings["AUDIO_BITRATE"], self.rt.settings["AUDIO_FRAME_MS"])
        self.voice.on_state = lambda speaking: self._status("speaking" if speaking else "listening")
        self.voice.start()
        self.chain = SpeakingChain(self.speech, self.voice)
        self._tasks = [asyncio.current_task(), asyncio.create_task(self._load())]
        await self._animate()

    async def _load(self) -> None:
        """Load this room's models in the background (once per process), telling the room how it goes."""
        try:
            await self.speech.load(lambda what: self._status(
                "loading", f"正在加载{what}…" if self.language == "zh" else f"loading {what} …"))
            self._status("listening")
        except Exception as exc:
            log.exception("room %s: models failed to load", self.room.room_id)
            self._status("error", f"models failed to load: {exc}")

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self in self.room.listeners:
            self.room.listeners.remove(self)
        if self.rt.loop is not None:
            self.rt.call(self._cancel_all)

    def _cancel_all(self) -> None:
        if self.chain is not None:
            self.chain.interrupt()
        if self.voice is not None:
            self.voice.close()
        for task in self._tasks:
            task.cancel()

    async def _animate(self) -> None:
        """The host's avatar: idle motion and blinks, the mouth of what it says; at the room's tier rate."""
        stream = PoseStream(self.room.tier.bits, self.room.tier.fps)
        while not self._closed:
            tier = self.room.tier
            stream.set_tier(tier.bits, tier.fps)
            now = time.monotonic()
            pose = self.motion.pose(now, thinking=self.state[0] == "thinking")
            pose.update(self.voice.mouth_now())
            self.room.relay_pose(self.member, stream.encode_values(pose))
            self._agenda_tick(now)
            await asyncio.sleep(max(0.0, 1.0 / tier.fps - (time.monotonic() - now)))

    # --- what the room tells it (other threads) -----------------------------------------------

    def heard_chat(self, member: Participant, chat: p.Chat) -> None:
        if member is not self.member:
            self.rt.call(self._heard_text, member, chat.text, "chat", time.monotonic())

    def heard_audio(self, member: Participant, audio: p.Audio) -> None:
        self.rt.call(self._heard_audio, member, audio.data)

    def heard_audio_end(self, member: Participant) -> None:
        self.rt.call(self._heard_audio_end, member)

    def members_changed(self, humans: int) -> None:
        self.rt.call(self._members_changed)          # counted again on the loop: calls may arrive out of order

    # --- on the host loop ---------------------------------------------------------------------

    def _members_changed(self) -> None:
        humans = self._humans = self.room.connected_humans
        self._status(*self.state, force=True)               # newcomers learn what the host is doing
        if not humans and self.chain is not None:
            self.chain.interrupt()                          # nobody left to answer: drop the work

    def _heard_audio(self, member: Participant, packet: bytes) -> None:
        for frame in self.speech.hear(member.user_id, packet):
            if isinstance(frame, SpeechStarted):
                self._barge_in(member)
            elif isinstance(frame, SpeechEnded):
                self._spawn(self._transcribe(member, frame))

    def _heard_audio_end(self, member: Participant) -> None:
        for frame in self.speech.end_of_audio(member.user_id):
            self._spawn(self._transcribe(member, frame))

    def _barge_in(self, member: Participant) -> None:
        if self.chain is not None and (self.voice.speaking or self.chain.busy):
            log.info("room %s: %s speaks, the host stops", self.room.room_id, member.user_id)
            self.chain.interrupt()

    async def _transcribe(self, member: Participant, utterance) -> None:
        detected = time.monotonic()
        result = await self.speech.transcribe(utterance)
        if isinstance(result, ErrorFrame):
            self.failures += 1
            self._status("error", result.message)
            return
        if isinstance(result, TranscriptFrame) and result.text:
            self._heard_text(member, result.text, "voice", utterance.t_end, end_detected=detected,
                             asr_done=time.monotonic())

    def _heard_text(self, member: Participant, text: str, source: str, t_heard: float,
                    end_detected: float | None = None, asr_done: float | None = None) -> None:
        self.transcript.add(member.user_id, member.display_name, text, source)
        request = self.addressing.match(text, source)
        if request is None or self._closed:
            return
        turn = TurnTimes(source=source, heard=t_heard, end_detected=end_detected, asr_done=asr_done)
        if self.chain is not None:
            self.chain.run(self._answer(request, member, turn))     # one reply at a time: the newest question wins

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_failure)
        return task

    async def _answer(self, request: Request, member: Participant, turn: TurnTimes) -> None:
        """The answer: the minutes' short form for "summarize"; the exact answer from the room's state for a
        question about the meeting that has one; else the language model's, kept to what the meeting knows."""
        self._status("thinking")
        state = self.meeting_state()
        if request.intent == "summary" and self.minutes_of is not None:
            reply = await self._say_text((await self.minutes_of(self.room.room_id)).spoken(), turn)
        elif (exact := facts.ask(request.text, state)) is not None:
            reply = await self._say_text(exact, turn)
        else:
            about = facts.about_meeting(request.text, state)
            keep = facts.Grounding(state) if about else None
            reply = await self.chain.answer(self._messages(request, state if about else None), turn, keep)
        if isinstance(reply, ErrorFrame):
            self.failures += 1
            self._post(reply.message)
            self._status("error", reply.message)
            return
        if reply:
            self._post(reply)
        self.turns = (self.turns + [turn])[-20:]
        self.turn_count += 1

    def meeting_state(self) -> facts.MeetingState:
        """The meeting as it stands: the room's state, and the notes so far from what people said."""
        record = meeting_record(self.room, self.transcript, self.member.user_id, self.name)
        return facts.meeting_state(self.room, record.content(), self.name, record.notes)

    def _said(self) -> list[Line]:
        """What people said to each other: not the host's words, not what was asked of it (a small model given
        those repeats them back)."""
        return [ln for ln in self.transcript.lines()
                if ln.speaker != self.member.user_id and self.addressing.match(ln.text, ln.source) is None]

    def _messages(self, request: Request, state: facts.MeetingState | None) -> list[dict]:
        """The prompt: instructions, agenda and the transcript window first (they change rarely or only grow, so
        the embedded model reuses their cache), then the room's state now (for a question about the meeting) and
        the question."""
        agenda = phrases.agenda(self.room.agenda.items, self.language) if self.room.agenda else ""
        return build_messages(request.text or "Hello", self.language, self.name,
                              format_lines(self.context.select(self._said())), agenda,
                              now=state.prompt_facts() if state is not None else "")

    async def _say_text(self, text: str, turn: TurnTimes | None = None) -> str:
        self._post(text)                                       # known in full: shown as it starts to be said
        await self.chain.say(text, turn)
        return ""

    def _post(self, text: str) -> None:
        """The host's words go to the chat and the transcript too."""
        self.room.post_chat(self.member, text[: p.MAX_CHAT_CHARS])
        self.transcript.add(self.member.user_id, self.name, text, "voice")

    def _agenda_tick(self, now: float) -> None:
        clock = self.room.agenda
        if clock.started_at is None and self._humans and self.speech.ready and clock:
            clock.start(now)                                 # the agenda starts once someone is there to hear it
        if clock.started_at is None or self._agenda_next >= len(self.agenda) or not self._humans:
            return
        event = self.agenda[self._agenda_next]
        if now - clock.started_at >= event.at and not self.chain.busy:
            self._agenda_next += 1                           # (an answer in progress finishes first: one voice)
            self.chain.run(self._say_text(announcement(event, len(clock), self.language)))

    def _status(self, state: str, detail: str = "", force: bool = False) -> None:
        if (state, detail) == self.state and not force:
            return
        self.state = (state, detail)
        self.room.broadcast(self.member, p.encode(p.HostStatus(self.member.slot, state, detail)))


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("host task failed", exc_info=task.exception())
