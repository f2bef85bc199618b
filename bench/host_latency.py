"""The AI host's latency with the embedded models, measured at a participant's socket.

    python -m bench.host_latency --runs 10 --json

One server under gunicorn (as the README runs it) with the host on; two participants, Alice who asks and Bob
who listens. Chat runs: "@AI …" → Bob's first host audio packet. Voice runs: Alice's microphone (espeak-ng
speech as 20 ms Opus packets in real time) → Bob's first host audio, from the end of her speech. Barge-in
runs: Alice talks while the host speaks → Bob stops getting audio. Lip offset: the lag that best lines up the
host's mouth-open curve with its audio's loudness, both as Bob receives them. The server's per-stage times
come from GET /api/meeting/<room>/host. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np

from bench.server import GunicornServer
from tests.hostutil import HostWatch, send_microphone, spoken, until_end
from tests.rtcclient import RtcClient
from tests.wsclient import MeetingClient
from wire import protocol as p

QUESTIONS = ["What is the capital of France?", "Name a primary color.", "How many days are in a week?",
             "What do bees make?", "Which planet do we live on?", "What is two plus two?",
             "What color is the sky?", "What animal says moo?", "What is frozen water called?",
             "Which season comes after winter?", "What do we use to write?", "How many legs does a cat have?"]
LONG_AGENDA = [{"title": f"Item {name} with a long discussion", "minutes": 30}
               for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")]
PAD_S = 0.4
VOICE_STAGES = {"vad_end_wait": "end_detected", "asr": "asr_done", "llm_first_token": "llm_first_token",
                "first_sentence": "first_sentence", "tts": "tts_done", "lipsync": "lipsync_done", "send": "first_audio"}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)



def first_after(events: list[tuple[float, float]], t0: float, above: float = -1.0) -> float | None:
    return next((t for t, v in events if t >= t0 and v > above), None)


def lip_offset(watch: HostWatch, t0: float) -> float | None:
    """The lag (ms, + = mouth late) maximising the correlation of mouth opening and audio loudness."""
    audio = [(t, r) for t, r in watch.audio if t >= t0]
    mouth = [(t, m) for t, m in watch.mouth if t >= t0]
    if len(audio) < 20 or len(mouth) < 10:
        return None
    grid = np.arange(audio[0][0], audio[-1][0], 0.005)
    loud = np.interp(grid, *zip(*audio, strict=True))
    mo = np.interp(grid, *zip(*mouth, strict=True))
    loud, mo = (loud - loud.mean()) / (loud.std() + 1e-9), (mo - mo.mean()) / (mo.std() + 1e-9)
    lags = range(-40, 41)                                   # ±200 ms in 5 ms steps
    scores = [float(np.mean(loud[max(0, -k):len(loud) - max(0, k)] * mo[max(0, k):len(mo) - max(0, -k)]))
              for k in lags]
    return 5.0 * lags[int(np.argmax(scores))]


def chat_run(api, room_id, alice, bob, watch, question) -> dict:
    bob.drain(0.2)
    t0 = time.monotonic()
    alice.send(p.Chat(f"@AI {question}"))
    watch.listen(bob, 60, until=until_end)
    turn = api.api("GET", f"/api/meeting/{room_id}/host")[1]["turns"][-1]
    audio_at, mouth_at = first_after(watch.audio, t0), first_after(watch.mouth, t0, 0.05)
    first_audio = (audio_at - t0) * 1000
    return {"first_audio_ms": first_audio, "first_mouth_ms": mouth_at and (mouth_at - t0) * 1000,
            "overhead_ms": first_audio - turn["first_sentence_ms"], "lip_offset_ms": lip_offset(watch, t0),
            "delivery_ms": (audio_at - turn["heard_at"]) * 1000 - turn["first_audio_ms"], "turn": turn}


def voice_run(api, room_id, alice, bob, watch, question) -> dict:
    speech = spoken(f"AI, {question}", pad_s=PAD_S)
    bob.drain(0.2)
    mic = threading.Thread(target=send_microphone, args=(alice, speech))
    start = time.monotonic()
    mic.start()
    voiced = np.flatnonzero(np.abs(speech) > 0.02)
    speech_end = start + (voiced[-1] + 1) / 48000               # the last sample that is really speech
    watch.listen(bob, 60, until=lambda w, m: isinstance(m, p.AudioStop) and time.monotonic() > speech_end)
    mic.join()
    turns = api.api("GET", f"/api/meeting/{room_id}/host")[1]["turns"]
    audio_at = first_after(watch.audio, speech_end)
    turn = turns[-1] if turns and turns[-1]["source"] == "voice" and turns[-1]["heard_at"] > start else None
    return {"voice_turn_ms": audio_at and (audio_at - speech_end) * 1000, "turn": turn,
            "vad_end_ms": turn and (turn["heard_at"] - speech_end) * 1000}


def barge_run(alice, bob, watch) -> dict:
    bob.drain(0.2)
    alice.send(p.Chat("@AI what is on the agenda?"))
    watch.listen(bob, 60, until=lambda w, m: isinstance(m, p.Audio))
    watch.listen(bob, 0.6)
    speech = spoken("Wait, stop please.", pad_s=PAD_S)
    mic = threading.Thread(target=send_microphone, args=(alice, speech))
    voiced = np.flatnonzero(np.abs(speech) > 0.02)
    ends_before = len(watch.ends)
    onset = time.monotonic() + voiced[0] / 48000                # the first sample that is really speech
    mic.start()
    watch.listen(bob, 10, until=lambda w, m: isinstance(m, p.AudioStop))
    mic.join()
    stop = watch.ends[-1] if len(watch.ends) > ends_before else None       # this run's AUDIO_END, not an older one
    last_audio = max((t for t, _ in watch.audio if t >= onset - 1), default=onset)
    watch.listen(bob, 1.0)
    late = [t for t, _ in watch.audio if t > last_audio]
    result = {"barge_in_ms": (last_audio - onset) * 1000,
              "interrupted": bool(stop and stop.reason == p.AudioEnd.INTERRUPTED),
              "packets_after_stop": len(late)}
    watch.listen(bob, 30, until=until_end)      # let a later answer (to "stop please") finish
    return result


def p50(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--parts", default="chat,voice,barge", help="which runs: chat, voice, barge (comma-separated)")
    ap.add_argument("--transport", choices=("ws", "rtc"), default="ws",
                    help="the participants' transport (rtc: WebRTC data channels; audio on the reliable one)")
    args = ap.parse_args()
    server = GunicornServer("run:create_app()", threads=64, env={"AVATAR_HOST_ENABLED": "1"}).start()
    api = server
    try:
        t_load = time.monotonic()
        body = server.create_room("lat", "owner", 16, host=True)
        api.api("POST", "/api/meeting/create", {"user_id": "owner", "room_id": "lat2", "agenda": LONG_AGENDA})
        Client = RtcClient if args.transport == "rtc" else MeetingClient       # noqa: N806
        alice, bob = Client(api, "lat", "alice"), Client(api, "lat", "bob")
        watch = HostWatch(body["host"]["slot"])
        watch.listen(bob, 300, until=lambda w, m: isinstance(m, p.HostStatus) and m.state == "listening")
        load_s = time.monotonic() - t_load
        log(f"models loaded in {load_s:.1f} s; warming up")
        chat_run(api, "lat", alice, bob, watch, "Say hello.")
        chats, voices, barges = [], [], []
        parts = set(args.parts.split(","))
        for i in range(args.runs if "chat" in parts else 0):
            chats.append(chat_run(api, "lat", alice, bob, watch, QUESTIONS[i % len(QUESTIONS)]))
            log(f"chat {i}: first audio {chats[-1]['first_audio_ms']:.0f} ms, overhead {chats[-1]['overhead_ms']:.0f} ms")
        for i in range(args.runs if "voice" in parts else 0):
            voices.append(voice_run(api, "lat", alice, bob, watch, QUESTIONS[(i + 3) % len(QUESTIONS)]))
            log(f"voice {i}: {voices[-1]['voice_turn_ms']}")
        if "barge" in parts:
            a2, b2 = Client(api, "lat2", "alice2"), Client(api, "lat2", "bob2")
            w2 = HostWatch(api.api("GET", "/api/meeting/lat2")[1]["host"]["slot"])
            w2.listen(b2, 60, until=until_end)      # the agenda's first announcement
        for i in range(args.runs if "barge" in parts else 0):
            barges.append(barge_run(a2, b2, w2))
            log(f"barge-in {i}: {barges[-1]}")
    finally:
        server.stop()
    stages = {name: p50(r["turn"].get(f"{name}_stage_ms") for r in chats)
              for name in ("llm_first_token", "first_sentence", "tts_done", "lipsync_done", "first_audio")}
    voice_stages = {name: p50(r["turn"] and r["turn"].get(f"{name}_stage_ms") for r in voices)
                    for name in ("end_detected", "asr_done", "llm_first_token", "first_sentence", "tts_done",
                                 "lipsync_done", "first_audio")}
    result = {
        "pipeline_overhead_ms_p50": p50(r["overhead_ms"] for r in chats),
        "first_audio_ms_p50": p50(r["first_audio_ms"] for r in chats),
        "first_mouth_ms_p50": p50(r["first_mouth_ms"] for r in chats),
        "voice_turn_ms_p50": p50(r["voice_turn_ms"] for r in voices),
        "voice_answered": sum(r["voice_turn_ms"] is not None for r in voices),      # of `runs` (the rest misheard)
        "lip_offset_ms": p50(r["lip_offset_ms"] for r in chats),
        "barge_in_ms_p50": p50(r["barge_in_ms"] for r in barges if r["interrupted"]),
        "barge_in_interrupted": sum(r["interrupted"] for r in barges),
        "stages_ms_p50": {"vad_end_after_speech": p50(r["vad_end_ms"] for r in voices),
                          "vad_end_wait": voice_stages["end_detected"], "asr": voice_stages["asr_done"],
                          "llm_first_token": stages["llm_first_token"],
                          "first_sentence": stages["first_sentence"], "tts": stages["tts_done"],
                          "lipsync": stages["lipsync_done"], "send": stages["first_audio"],
                          "delivery_to_client": p50(r["delivery_ms"] for r in chats)},
        "voice_stages_ms_p50": {"vad_end_after_speech": p50(r["vad_end_ms"] for r in voices),
                                **{name: voice_stages[key] for name, key in VOICE_STAGES.items()}},
        "runs": args.runs, "transport": args.transport, "models_load_s": round(load_s, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m": os.getloadavg()[0]},
        "all": {"chat": [{k: v for k, v in r.items() if k != "turn"} for r in chats],
                "voice": [{**{k: v for k, v in r.items() if k != "turn"},
                           **{name: r["turn"] and r["turn"].get(f"{key}_stage_ms") for name, key in VOICE_STAGES.items()}}
                          for r in voices],
                "barge_in": barges},
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
