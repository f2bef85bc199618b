"""One-to-one sessions' latency and MP4 size, measured at a client (docs/SESSIONS.md).

    python -m bench.session_latency --runs 10 --json

One server under gunicorn with the default settings (embedded SmolLM2, Piper, the astronaut; the avatars in a
folder of the bench's own). After a warm-up turn that loads the models, one session's WebSocket gets `--runs`
texts: the first video is the time from sending the text to having the first `video_chunk_meta` and its MP4,
with and without the LLM's time to its first sentence (the server's `first_sentence_ms`, subtracted). Then
`--runs` REST `/text` calls asking for one short sentence. Then N sessions (1, 2, 3 … `--max-sessions`) each
send a text at the same moment, `--rounds` times, until the first video's p50 (LLM excluded) is twice N = 1's
or a turn fails. The server's per-stage times are the messages' `timing`. The last line of stdout is one JSON
object (docs/BENCHMARKS.md says what each figure is).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
from websockets.sync.client import connect

import config
from bench.server import CLK_TCK, GunicornServer
from bench.stats import machine, machine_busy_seconds

QUESTIONS = ["What do bees make?", "Name a primary color.", "How many days are in a week?", "What is the capital "
             "of France?", "Which planet do we live on?", "What color is the sky?", "What animal says moo?",
             "What is frozen water called?", "Which season comes after winter?", "How many legs does a cat have?"]
SHORT = "Answer in one short sentence: "
TIMEOUT = 300.0                       # seconds for a turn (the warm-up loads the models and builds the avatar)
GOALS = {"first_video_ms_p50": 400, "first_video_ms_with_llm_p50": 900, "mp4_bytes_per_second": 100_000}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


class SessionClient:
    """A session's WebSocket (made on connect): one turn at a time, timed."""

    def __init__(self, server: GunicornServer, session_id: str):
        self.id = session_id
        self.ws = connect(f"{server.ws_url}/ws/{session_id}", compression=None, max_size=None, open_timeout=60,
                          ping_interval=None, max_queue=None).__enter__()
        hello = json.loads(self.ws.recv(60))
        assert hello["type"] == "session", hello

    def turn(self, text: str) -> dict:
        """Send `text` and read up to stream_complete: the first MP4's arrival (ms after sending, LLM included and
        excluded), every chunk's size, duration, timing, bytes and arrival, the turn's timing."""
        t0 = time.monotonic()
        self.ws.send(json.dumps({"type": "text", "text": text, "streaming": True}))
        chunks = []
        while True:
            message = json.loads(self.ws.recv(TIMEOUT))
            if message["type"] == "video_chunk_meta":
                mp4 = self.ws.recv(TIMEOUT)
                assert isinstance(mp4, bytes) and len(mp4) == message["data"]["size"], message
                chunks.append({**message["data"], "mp4": mp4, "at": time.monotonic()})
            elif message["type"] == "stream_complete":
                break
            elif message["type"] in ("error", "interrupted"):
                raise RuntimeError(f"session {self.id}: {message}")
        with_llm = (chunks[0]["at"] - t0) * 1000 if chunks else None
        first = chunks[0]["timing"] if chunks else {}
        return {"first_video_ms_with_llm": with_llm,
                "first_video_ms": with_llm and with_llm - first["first_sentence_ms"],
                "stall_ms": stall(chunks) * 1000, "first": first, "timing": message["data"]["timing"],
                "chunks": chunks, "text": message["data"]["full_text"]}

    def close(self) -> None:
        self.ws.close()


def stall(chunks: list[dict]) -> float:
    """Seconds a player that starts the first chunk as it arrives and plays the rest back to back waits for
    chunks not there yet."""
    waited, free_at = 0.0, chunks[0]["at"] if chunks else 0.0
    for chunk in chunks:
        waited += max(0.0, chunk["at"] - free_at)
        free_at = max(free_at, chunk["at"]) + chunk["duration"]
    return waited


def cpu_seconds(server: GunicornServer) -> float:
    """CPU seconds of the server's processes (gunicorn's master and workers, their ffmpegs once ended) and of
    this one."""
    total = sum(os.times()[:2])
    for pid in (server.proc.pid, *server.worker_pids()):
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


class Phase:
    """A phase's seconds and how busy the machine was with other work meanwhile (`other_cpu_pct`: of one core,
    everything but the server, its ffmpegs and this bench)."""

    def __init__(self, server: GunicornServer):
        self.server, self.t, self.busy, self.ours = server, time.monotonic(), machine_busy_seconds(), cpu_seconds(server)

    def end(self) -> dict:
        seconds = time.monotonic() - self.t
        ours = cpu_seconds(self.server) - self.ours
        return {"seconds": round(seconds, 1), "ours_cpu_pct": round(100 * ours / seconds, 1),
                "other_cpu_pct": round(100 * (machine_busy_seconds() - self.busy - ours) / seconds, 1),
                "loadavg_1m": round(os.getloadavg()[0], 2)}


def measured(server: GunicornServer, phase, *args) -> tuple:
    """`phase(server, *args)`, and how busy the machine was meanwhile (Phase)."""
    busy = Phase(server)
    return phase(server, *args), busy.end()


def p(values, q: float = 50) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.percentile(values, q)), 1) if values else None


def probe_seconds(mp4: bytes) -> float | None:
    """The MP4's video duration as ffprobe reads it (None without ffprobe)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(mp4)
        f.flush()
        try:
            out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                  "stream=duration", "-of", "csv=p=0", f.name], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    return float(out.strip())


def stages(runs: list[dict]) -> dict:
    """The first chunk's server stages (p50, ms), and what is left to the client: the text's way in and the MP4's
    way out (`delivery`), and the gaps between the stages (`other`)."""
    runs = [r for r in runs if r["chunks"]]
    firsts = [r["first"] for r in runs]
    return {"llm_first_token": p(f["llm_first_token_ms"] for f in firsts),
            "first_sentence": p(f["first_sentence_ms"] for f in firsts),
            "tts": p(f["tts_ms"] for f in firsts), "render": p(f["render_ms"] for f in firsts),
            "sent": p(f["sent_ms"] for f in firsts),
            "other": p(f["sent_ms"] - f["first_sentence_ms"] - f["tts_ms"] - f["render_ms"] for f in firsts),
            "delivery": p(r["first_video_ms_with_llm"] - r["first"]["sent_ms"] for r in runs)}


def streaming_runs(server: GunicornServer, runs: int) -> list[dict]:
    client = SessionClient(server, f"bench-ws-{uuid.uuid4().hex[:8]}")
    try:
        out = []
        for i in range(runs):
            out.append(client.turn(QUESTIONS[i % len(QUESTIONS)]))
            r = out[-1]
            log(f"ws {i}: first video {r['first_video_ms']:.0f} ms (with the LLM {r['first_video_ms_with_llm']:.0f}), "
                f"{len(r['chunks'])} chunks: {r['text']!r}")
        return out
    finally:
        client.close()
        server.api("DELETE", f"/api/v1/sessions/{client.id}")


def rest_runs(server: GunicornServer, runs: int) -> list[dict]:
    status, body = server.api("POST", "/api/v1/sessions")
    assert status == 201, body
    sid, out = body["session_id"], []
    try:
        for i in range(runs):
            t0 = time.monotonic()
            status, answer = server.api("POST", f"/api/v1/sessions/{sid}/text",
                                        {"text": SHORT + QUESTIONS[(i + 3) % len(QUESTIONS)], "streaming": False},
                                        timeout=TIMEOUT)
            assert status == 200, answer
            out.append({"ms": (time.monotonic() - t0) * 1000, "timing": answer["timing"], "text": answer["text"]})
            log(f"rest {i}: {out[-1]['ms']:.0f} ms, {answer['timing']['chunks']} chunks: {answer['text']!r}")
        return out
    finally:
        server.api("DELETE", f"/api/v1/sessions/{sid}")


def concurrent_round(clients: list[SessionClient], round_: int) -> list[dict]:
    """Every client sends a text at the same moment; their turns."""
    results: list = [None] * len(clients)
    ready = threading.Barrier(len(clients))

    def run(i: int) -> None:
        try:
            ready.wait(60)
            results[i] = clients[i].turn(QUESTIONS[(round_ + i) % len(QUESTIONS)])
        except Exception as exc:                          # said in the output, not lost in a thread
            results[i] = {"error": f"{type(exc).__name__}: {exc}"}
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def concurrency(server: GunicornServer, cap: int, rounds: int) -> tuple[dict, int, str]:
    """({N: figures}, the most sessions speaking at once before the first video's p50 doubled or a turn failed,
    what ended the curve: "doubled", "failed" or "cap")."""
    clients = [SessionClient(server, f"bench-c{i}-{uuid.uuid4().hex[:6]}") for i in range(cap)]
    curve, stop = {}, "cap"
    try:
        for n in range(1, cap + 1):
            turns = [t for r in range(rounds) for t in concurrent_round(clients[:n], r)]
            errors = [t["error"] for t in turns if "error" in t]
            turns = [t for t in turns if "error" not in t]
            curve[n] = {"p50": p(t["first_video_ms"] for t in turns), "p90": p((t["first_video_ms"] for t in turns), 90),
                        "with_llm_p50": p(t["first_video_ms_with_llm"] for t in turns),
                        "render_p50": p(t["first"].get("render_ms") for t in turns), "turns": len(turns),
                        "failed": len(errors), "errors": sorted(set(errors))[:3],
                        "loadavg_1m": round(os.getloadavg()[0], 2)}
            log(f"{n} at once: {curve[n]}")
            if errors or not turns:
                stop = "failed"
                break
            if curve[n]["p50"] > 2 * curve[1]["p50"]:
                stop = "doubled"
                break
    finally:
        for client in clients:
            client.close()
            server.api("DELETE", f"/api/v1/sessions/{client.id}")
    base = curve.get(1, {}).get("p50")
    held = [n for n, c in curve.items() if base and not c["failed"] and c["p50"] <= 2 * base]
    return curve, max(held, default=0), stop


def figures(runs: list[dict], rests: list[dict]) -> dict:
    """The streamed runs' and the REST calls' figures (p50, p90), the chunks' bytes per second of speech."""
    chunks = [c for r in runs for c in r["chunks"]]
    probed = [probe_seconds(c["mp4"]) for c in chunks]
    seconds = sum(s if s is not None else c["duration"] for s, c in zip(probed, chunks, strict=True))
    firsts = [r["chunks"][0] for r in runs if r["chunks"]]
    return {
        "first_video_ms_p50": p(r["first_video_ms"] for r in runs),
        "first_video_ms_p90": p((r["first_video_ms"] for r in runs), 90),
        "first_video_ms_with_llm_p50": p(r["first_video_ms_with_llm"] for r in runs),
        "first_video_ms_with_llm_p90": p((r["first_video_ms_with_llm"] for r in runs), 90),
        "mp4_bytes_per_second": round(sum(len(c["mp4"]) for c in chunks) / seconds) if seconds else None,
        "mp4_first_chunk_bytes_per_second": p(len(c["mp4"]) / c["duration"] for c in firsts),
        "rest_text_ms_p50": p(r["ms"] for r in rests),
        "rest_text_ms_p90": p((r["ms"] for r in rests), 90),
        "rest_chunks_p50": p(r["timing"]["chunks"] for r in rests),
        "rest_stages_ms_p50": {k: p(r["timing"][f"{k}_ms"] for r in rests)
                               for k in ("first_sentence", "first_chunk", "tts", "render", "done")},
        "stages_ms_p50": stages(runs),
        "playback_stall_ms_p50": p(r["stall_ms"] for r in runs),
        "playback_stall_ms_max": p((r["stall_ms"] for r in runs), 100),
        "chunks_per_reply_p50": p(len(r["chunks"]) for r in runs),
        "first_chunk_seconds_p50": p(c["duration"] for c in firsts),
        "speech_seconds": round(seconds, 2), "probed_chunks": sum(s is not None for s in probed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="streamed turns, and REST /text calls")
    ap.add_argument("--max-sessions", type=int, default=8, help="the concurrency curve's cap")
    ap.add_argument("--rounds", type=int, default=4, help="texts each session sends at each N")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    info, phases = machine(), {}
    avatars = tempfile.mkdtemp(prefix="session-bench-")
    env = {"AVATAR_PHOTO_AVATARS_DIR": f"{avatars}/avatars", "AVATAR_SESSION_DIR": f"{avatars}/sessions"}
    if args.max_sessions > config.load().SESSION_MAX:
        env["AVATAR_SESSION_MAX"] = str(args.max_sessions)
    server = GunicornServer("run:create_app()", 64, env).start()
    try:
        t_load = time.monotonic()
        warm = SessionClient(server, "bench-warm-up")
        warm.turn("Say hello.")
        warm.close()
        server.api("DELETE", "/api/v1/sessions/bench-warm-up")
        load_s = time.monotonic() - t_load
        log(f"models loaded and the avatar built in {load_s:.1f} s")
        runs, phases["streaming"] = measured(server, streaming_runs, args.runs)
        rests, phases["rest"] = measured(server, rest_runs, args.runs)
        (curve, concurrent, stop), phases["concurrency"] = measured(server, concurrency, args.max_sessions, args.rounds)
        problems = server.log_problems()
    finally:
        server.stop()
        shutil.rmtree(avatars, ignore_errors=True)
    result = figures(runs, rests) | {
        "concurrent_sessions": concurrent, "concurrency_stopped_by": stop,
        "concurrency_curve": {n: c["p50"] for n, c in curve.items()},
        "runs": args.runs, "rounds": args.rounds, "max_sessions": args.max_sessions,
        "llm_max_tokens": config.load().LLM_MAX_TOKENS, "models_load_s": round(load_s, 1),
        "server_log": {k: problems[k] for k in ("error_lines", "first", "log")}}
    result["goal_met"] = {f"{k}_le_{v}": result[k] is not None and result[k] <= v for k, v in GOALS.items()}
    result["machine"] = {**info, "loadavg_at_end": os.getloadavg()[0], "phases": phases}
    result["all"] = {"ws": [{"first_video_ms": r["first_video_ms"], "with_llm_ms": r["first_video_ms_with_llm"],
                             "stall_ms": r["stall_ms"], "first": r["first"], "turn": r["timing"], "text": r["text"],
                             "chunks": [{k: c[k] for k in ("text", "size", "duration", "timing")} for c in r["chunks"]]}
                            for r in runs],
                     "rest": rests, "concurrency": curve}
    if not args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
