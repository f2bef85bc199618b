"""The speaking chain's one policy (pipeline.chain): one reply at a time into a real HostVoice (Opus, paced in
real time); a newer reply or an interruption cancels the running one and stops the voice; a finished reply
that is still being heard is not cut off by the next one. Fast: no models (the replies speak a tone)."""
from __future__ import annotations

import asyncio

import numpy as np

from pipeline.chain import SpeakingChain
from pipeline.frames import Sentence, SpeechAudio
from pipeline.lipsync import empty_track
from pipeline.voice import HostVoice
from wire import protocol as p

RATE = 24000


def tone(seconds: float) -> SpeechAudio:
    t = np.arange(int(seconds * RATE)) / RATE
    return SpeechAudio((0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE, Sentence("la", 0))


class Heard:
    """What the room would receive from the voice: audio packets and how each utterance stopped."""

    def __init__(self):
        self.packets, self.stops = 0, []

    def __call__(self, message: bytes) -> None:
        msg = p.decode_server(message)
        if isinstance(msg, p.Audio):
            self.packets += 1
        elif isinstance(msg, p.AudioStop):
            self.stops.append(msg.reason)


async def speak(voice: HostVoice, seconds: float, said: list, name: str) -> str:
    audio = tone(seconds)
    await voice.say(audio, empty_track(audio, 30))
    await voice.end_utterance()
    said.append(name)
    return name


async def long_reply(voice: HostVoice, said: list, started: asyncio.Event) -> str:
    started.set()
    await speak(voice, 0.2, said, "first sentence")
    await asyncio.sleep(30)                       # still writing the rest of the answer
    said.append("never")
    return "never"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def voiced(slot: int) -> tuple[Heard, HostVoice, SpeakingChain]:
    """A started voice (on the running loop), what it sends, and a chain into it."""
    heard = Heard()
    voice = HostVoice(heard, slot=slot)
    voice.start()
    return heard, voice, SpeakingChain(None, voice)


async def started_long_reply(chain: SpeakingChain, voice: HostVoice, said: list) -> asyncio.Task:
    """long_reply running, its first sentence being heard."""
    started = asyncio.Event()
    reply = chain.run(long_reply(voice, said, started))
    await started.wait()
    while not voice.speaking:
        await asyncio.sleep(0.01)
    return reply


def test_a_newer_reply_cancels_the_running_one_and_stops_the_voice():
    async def main():
        heard, voice, chain = voiced(3)
        said = []
        first = await started_long_reply(chain, voice, said)
        second = chain.run(speak(voice, 0.1, said, "second"))
        assert await second == "second"
        assert first.cancelled() and "never" not in said
        while voice.speaking:
            await asyncio.sleep(0.01)
        voice.close()
        return heard
    heard = run(main())
    assert heard.stops[0] == p.AudioEnd.INTERRUPTED and heard.stops[-1] == p.AudioEnd.FINISHED


def test_interrupt_stops_a_reply_and_its_voice_at_once():
    async def main():
        heard, voice, chain = voiced(1)
        reply = await started_long_reply(chain, voice, [])
        assert chain.busy and chain.interrupt()
        await asyncio.sleep(0)
        assert reply.cancelled() and not chain.busy and not voice.speaking
        assert not chain.interrupt()                  # nothing left to stop
        voice.close()
        return heard
    assert run(main()).stops == [p.AudioEnd.INTERRUPTED]


def test_a_reply_that_finished_but_is_still_heard_is_followed_not_cut():
    async def main():
        heard, voice, chain = voiced(2)
        said = []
        await chain.run(speak(voice, 0.6, said, "agenda"))          # queued whole: the task ends at once
        assert voice.speaking and not chain.busy
        await chain.run(speak(voice, 0.1, said, "answer"))
        while voice.speaking:
            await asyncio.sleep(0.01)
        voice.close()
        return heard
    heard = run(main())
    assert heard.stops == [p.AudioEnd.FINISHED, p.AudioEnd.FINISHED]      # each said to its end, none cut
    assert heard.packets >= int(0.7 / 0.02)           # both utterances played whole (20 ms packets)
