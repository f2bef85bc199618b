"""The speaking chain: LLM → sentences → TTS → lip-sync → a sink, one reply at a time.

The stages are HostSpeech's (`answer` and `say` run them: each an async `process` from frames to frames; a
stage's failure is an `ErrorFrame`, which ends the reply and is returned to whoever asked). What this adds is
the one policy for replies that every user of the chain shares: a reply is a coroutine speaking into the
chain's sink through HostSpeech, and a new one, or `interrupt()`, cancels the one running and stops the
sink's voice at once. A room's AI host speaks into `HostVoice` (Opus to the room); a one-to-one
session into a sink that renders each sentence as an MP4 clip. A sink is anything with HostVoice's
`say(audio, track)`, `end_utterance()`, `interrupt()` and `first_packet_at`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Protocol

from meeting.errors import MeetingError
from pipeline.frames import ErrorFrame, MouthTrack, SpeechAudio
from pipeline.speech import HostSpeech, TurnTimes

log = logging.getLogger(__name__)


class Sink(Protocol):
    first_packet_at: float | None

    async def say(self, audio: SpeechAudio, track: MouthTrack) -> None: ...

    async def end_utterance(self) -> None: ...

    def interrupt(self) -> bool: ...


class SpeakingChain:
    """One voice: at most one reply runs; starting another while it runs, or `interrupt()`, cancels it and
    stops the sink. Use it on the event loop it runs on."""

    def __init__(self, speech: HostSpeech, sink: Sink):
        self.speech, self.sink = speech, sink
        self._reply: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        """A reply is running (written, or still being handed to the sink; a voice may go on playing a reply
        that has finished)."""
        return self._reply is not None and not self._reply.done()

    async def answer(self, messages: list[dict], turn: TurnTimes, keep: Callable[[str], bool] | None = None,
                     on_text: Callable[[str], None] | None = None) -> str | ErrorFrame:
        """The LLM's answer to `messages`, said sentence by sentence into the sink as it is written (part of a
        reply: await it inside the coroutine given to `run`); `on_text` gets the text as it is written."""
        return await self.speech.answer(messages, self.sink, turn, keep, on_text)

    async def say(self, text: str, turn: TurnTimes | None = None) -> None:
        """A text that is already whole, said into the sink."""
        await self.speech.say(text, self.sink, turn)

    def run(self, reply: Coroutine) -> asyncio.Task:
        """Make `reply` (a coroutine that speaks into this chain's sink) the one running. A reply still running is
        interrupted; one that has finished but is still being heard (a voice plays in real time) is not: the
        new one follows it."""
        if self.busy:
            self.interrupt()
        self._reply = asyncio.get_running_loop().create_task(reply)
        self._reply.add_done_callback(_log_failure)
        return self._reply

    def interrupt(self) -> bool:
        """Cancel the running reply and stop the sink's voice (barge-in, a newer question, nobody left to hear);
        True when something was stopped."""
        running = self.busy
        if running:
            self._reply.cancel()
        self._reply = None
        return self.sink.interrupt() or running


def _log_failure(task: asyncio.Task) -> None:
    """A reply's failure its owner did not handle (a refusal it reported, a MeetingError, is not one)."""
    if task.cancelled() or task.exception() is None:
        return
    err = task.exception()
    if isinstance(err, MeetingError):
        log.info("a reply ended: %s", err.message)
    else:
        log.error("a reply failed", exc_info=err)
