"""Minutes and meeting-state answers of the AI host on the scripted meetings (tests/data/meetings).

    python -m bench.minutes --json

One server under gunicorn with the host on (embedded defaults). Each scripted meeting is replayed into a room
of its own as chat, its clock `--scale` times the script's (1/30: a 30-minute meeting in a minute; the agenda's
minutes are scaled the same way): people join and leave as scripted, the host's answers to the scripted
questions about the meeting are checked against the room's state when they arrive, and the minutes are asked
for at the end (`minutes_ms`: request → answer). One meeting (`--speech`, en_standup) is replayed again as
speech: each line said by Piper's voice through the microphone path (Opus, VAD, Whisper). `--heldout` adds the
two meetings nobody tuned the rules on, reported apart. `--candidates` also measures, without a server, the
embedded models writing whole minutes themselves (SmolLM2-135M and Qwen2.5-Coder-0.5B, JSON held to a schema by
llama.cpp's grammar) against the rules that are the default. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time

import numpy as np

from bench.server import GunicornServer
from bench.stats import machine
from config import Settings
from tests.meetings import Meeting, load_all, replay, score_minutes

_LINES = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4}
_TEXT = {"type": "string", "maxLength": 200}


def _items(fields: dict, most: int) -> dict:
    return {"type": "array", "maxItems": most, "items": {"type": "object", "required": list(fields),
                                                         "properties": fields}}


SCHEMA = {"type": "object", "required": ["summary", "decisions", "action_items", "open_questions"], "properties": {
    "summary": {"type": "string", "maxLength": 400},
    "decisions": _items({"text": _TEXT, "source_lines": _LINES}, 6),
    "action_items": _items({"owner": {"type": "string", "maxLength": 40}, "task": _TEXT,
                            "due": {"type": "string", "maxLength": 40}, "source_lines": _LINES}, 8),
    "open_questions": _items({"text": _TEXT, "source_lines": _LINES}, 4)}}
ASK = {"en": ("Write the minutes of this meeting as JSON: a two-sentence summary; the decisions; the action items "
              "(owner = the person who will do it, task, due = the deadline as said or \"\"); the questions left "
              "open. Give each item the numbers of the transcript lines it comes from. Only what the transcript says."),
       "zh": ("把这次会议的纪要写成JSON：两句话的摘要；做出的决定；"
              "待办事项（owner=负责的人，task=事项，due=说到的截止时间，没有就写\"\"）；"
              "还没有定的问题。每一项给出它来自的记录行号。只写记录里说到的。")}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def p50(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def figures(runs: list) -> dict:
    """Recall and invented items over several meetings' scores, and the per-meeting figures."""
    scores = [r["score"] for r in runs]

    def total(kind: str, field: str) -> int:
        return sum(s[field][kind] for s in scores)
    ratio = lambda a, b: round(a / b, 3) if b else None      # noqa: E731
    asked = [a for r in runs for a in r.get("asked", []) if a["kind"] != "general"]
    general = [a for r in runs for a in r.get("asked", []) if a["kind"] == "general"]
    return {"decision_recall": ratio(total("decisions", "found"), total("decisions", "key")),
            "action_item_recall": ratio(total("action_items", "found"), total("action_items", "key")),
            "open_question_recall": ratio(total("open_questions", "found"), total("open_questions", "key")),
            "invented_items": sum(s["invented_items"] for s in scores),
            "extra_items": sum(s["extra_items"] + s["trap_items"] for s in scores),
            "state_questions_right": ratio(sum(a["ok"] for a in asked), len(asked)),
            "state_questions": len(asked), "minutes_ms_p50": p50(r.get("minutes_ms") for r in runs),
            "general_questions_right": ratio(sum(a["ok"] for a in general), len(general)),
            "answer_ms_p50": p50(a["answer_ms"] for a in asked)}


def served(server, meetings: list[Meeting], scale: float, speak=None, tag: str = "") -> list[dict]:
    runs = []
    for meeting in meetings:
        t0 = time.monotonic()
        done = replay(server, meeting, f"bench-{tag}{meeting.id}", scale=scale, speak=speak)
        score = done.score().as_json()
        asked = [{"n": a.n, "kind": a.expect["kind"], "question": a.question, "answer": a.answer, "ok": a.ok,
                  "why": a.why, "answer_ms": a.answer_ms and round(a.answer_ms, 1)} for a in done.asked]
        runs.append({"meeting": meeting.id, "language": meeting.language, "score": score, "asked": asked,
                     "minutes_ms": round(done.minutes_ms, 1), "replay_s": round(time.monotonic() - t0, 1),
                     "summary": done.minutes["summary"]})
        log(f"{tag}{meeting.id}: decisions {score['decision_recall']}, action items {score['action_item_recall']}, "
            f"invented {score['invented_items']}, questions {sum(a['ok'] for a in asked)}/{len(asked)}, "
            f"minutes {done.minutes_ms:.0f} ms")
    return runs


def piper_speaker():
    """say(seat, text): `text` in Piper's voice through the seat's microphone (20 ms Opus packets, real time)."""
    import soxr

    from pipeline.tts_piper import load_piper
    from tests.hostutil import send_microphone
    piper = load_piper(cache_dir="~/.cache/avatar-meeting")

    def say(seat, text: str) -> None:
        pcm, rate, _ = piper.synthesize(text)
        pcm = soxr.resample(pcm.astype(np.float32), rate, 48000)
        pad = np.zeros(int(48000 * 0.4), np.float32)
        send_microphone(seat.client, np.concatenate([pad, pcm, pad]))
    return say


# --- the models writing minutes themselves (the candidates the rules were chosen against) -----------------

def llm_minutes(llm, meeting: Meeting) -> tuple[dict, float]:
    """Minutes written by `llm` (a llama_cpp.Llama) from the numbered transcript, and the seconds it took."""
    from pipeline.addressing import Addressing
    addressed = Addressing("AI")
    lines = [f"[{s.n}] {meeting.participants[s.speaker]}: {s.text}" for s in meeting.lines
             if addressed.match(s.text, "chat") is None]
    messages = [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": ASK[meeting.language]}]
    t0 = time.monotonic()
    out = llm.create_chat_completion(messages=messages, max_tokens=1600, temperature=0.0,
                                     response_format={"type": "json_object", "schema": SCHEMA})
    took = time.monotonic() - t0
    try:
        minutes = json.loads(out["choices"][0]["message"]["content"])
    except ValueError:                      # cut off at max_tokens: counted as minutes with nothing in them
        minutes = {"decisions": [], "action_items": [], "open_questions": [], "invalid_json": True}
    names = {n.lower(): u for u, n in meeting.participants.items()}
    for item in minutes.get("action_items", []):
        item["owner_id"] = names.get(str(item.get("owner", "")).lower(), item.get("owner"))
        item["due"] = item.get("due") or None
    return minutes, took


def rules_minutes(meeting: Meeting) -> tuple[dict, float]:
    from pipeline.facts import Stay
    from pipeline.minutes import MeetingRecord, make_minutes
    from pipeline.transcript import Line
    t0 = time.monotonic()
    lines = [Line(s.speaker, meeting.participants[s.speaker], s.text, 1000.0 + s.t, "chat", s.n) for s in meeting.lines]
    stays = [Stay(u, n, 1000.0) for u, n in meeting.participants.items()]
    start = dt.datetime.fromisoformat(meeting.date).timestamp()
    record = MeetingRecord(meeting.id, meeting.language, "ai-host", "AI", lines, stays, [], start, None)
    return make_minutes(record).as_json(), time.monotonic() - t0


def candidates(meetings: list[Meeting], settings: Settings) -> dict:
    from pipeline.llm import _plain_cpu_buffers, default_gguf, qwen_gguf
    out = {}
    for name, gguf in (("rules", None), ("smollm2-135m", default_gguf()),
                       ("qwen2.5-coder-0.5b", qwen_gguf(settings["MODEL_CACHE_DIR"]))):
        llm = None
        if gguf is not None:
            from llama_cpp import Llama
            with _plain_cpu_buffers():
                llm = Llama(model_path=gguf, n_ctx=4096, n_threads=2, n_batch=256, verbose=False)
        runs = []
        for meeting in meetings:
            minutes, took = rules_minutes(meeting) if llm is None else llm_minutes(llm, meeting)
            transcript = {s.n: s.text for s in meeting.lines}
            score = score_minutes(minutes, meeting, {n: n for n in transcript}, transcript).as_json()
            runs.append({"meeting": meeting.id, "score": score, "minutes_ms": round(took * 1000, 1),
                         "items": len(minutes["decisions"]) + len(minutes["action_items"]),
                         "invalid_json": bool(minutes.get("invalid_json"))})
            log(f"candidate {name} {meeting.id}: decisions {score['decision_recall']}, action items "
                f"{score['action_item_recall']}, invented {score['invented_items']}, {took:.1f} s")
        out[name] = {k: v for k, v in figures(runs).items() if not k.startswith(("state_", "answer_", "general_"))}
        out[name]["items_written"] = sum(r["items"] for r in runs)
        out[name]["invalid_json"] = sum(r["invalid_json"] for r in runs)
        out[name]["meetings"] = {r["meeting"]: {"decision_recall": r["score"]["decision_recall"],
                                                "action_item_recall": r["score"]["action_item_recall"],
                                                "invented_items": r["score"]["invented_items"],
                                                "invented": r["score"]["invented"][:4], "items": r["items"],
                                                "minutes_ms": r["minutes_ms"]} for r in runs}
        del llm
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scale", type=float, default=1 / 30, help="replay clock / script clock")
    ap.add_argument("--only", default="", help="comma-separated meeting ids")
    ap.add_argument("--speech", default="en_standup", help="a meeting replayed as speech too ('' for none)")
    ap.add_argument("--heldout", action="store_true", help="also the held-out meetings, reported apart")
    ap.add_argument("--candidates", action="store_true", help="also the models writing minutes themselves")
    args = ap.parse_args()
    meetings = [m for m in load_all(heldout=True) if not args.only or m.id in args.only.split(",")]
    dev = [m for m in meetings if not m.heldout]
    result: dict = {}
    server = GunicornServer("run:create_app()", threads=64, env={"AVATAR_HOST_ENABLED": "1"}).start()
    try:
        runs = served(server, dev, args.scale)
        result.update(figures(runs))
        result["model"] = "rules (pipeline.notes) + room state (pipeline.facts); live answers: SmolLM2-135M-Instruct"
        result["meetings"] = {r["meeting"]: {**{k: v for k, v in figures([r]).items()
                                                if k not in ("state_questions", "answer_ms_p50",
                                                             "general_questions_right")},
                                             "replay_s": r["replay_s"], "summary": r["summary"],
                                             "wrong_answers": [a for a in r["asked"] if not a["ok"]],
                                             "missed": r["score"]["wrong"], "extra": r["score"]["extra"]}
                              for r in runs}
        if args.speech and any(m.id == args.speech for m in meetings):
            spoken = served(server, [m for m in meetings if m.id == args.speech], args.scale, piper_speaker(), "speech-")
            result["speech"] = {**figures(spoken), "meeting": args.speech, "summary": spoken[0]["summary"],
                                "missed": spoken[0]["score"]["wrong"], "invented": spoken[0]["score"]["invented"]}
        if args.heldout:
            held = served(server, [m for m in meetings if m.heldout], args.scale, tag="heldout-")
            result["heldout"] = {**figures(held), "meetings": [r["meeting"] for r in held]}
    finally:
        server.stop()
    if args.candidates:
        import config
        result["candidates"] = candidates(dev, config.load())
    result["scale"] = args.scale
    result["machine"] = machine()
    print(json.dumps(result, ensure_ascii=False) if args.json else json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
