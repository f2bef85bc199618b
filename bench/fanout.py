"""WebSocket fan-out benchmark: real clients against the real server and the naive relay, one after the other.

    .venv/bin/python -m bench.fanout --rooms 10 --participants 16 --seconds 20 --json
    .venv/bin/python -m bench.fanout --quick --json
    .venv/bin/python -m bench.fanout --workers 2 --redis auto --json     # one process, then 2 sharing rooms on Redis
    .venv/bin/python -m bench.fanout --flood 2 --json                     # 2 flooding senders per room (0: none)

Progress goes to stderr; with --json the last line of stdout is the result. See docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import pathlib
import sys
import time

from bench import rtcload, stats
from bench.loadgen import flood_main, worker_main
from bench.server import GunicornServer, ServerGroup

SERVERS = {"ours": "run:create_app()", "baseline": "bench.naive_relay:create_app()"}
SEARCH_STEPS = (10, 15, 20, 25, 30, 40, 50, 60)
SEARCH_P99_S = 0.020
FANOUT_P99_MS = 10.0                  # the fan-out goal over the WebSocket at 10 rooms x 16: p99 <= 10 ms
METRIC_POSE_RATE = 'avatar_dropped_total{reason="pose_rate"}'      # the server's /metrics (ours; the naive has none)
METRIC_CHAT_RATE = 'avatar_dropped_total{reason="chat_rate"}'
METRIC_STALE_POSE = 'avatar_dropped_total{reason="stale_pose"}'
METRIC_POSE_IN = 'avatar_messages_in_total{kind="pose"}'
METRIC_FLOOD = 'avatar_dropped_total{reason="flood"}'            # over a sender's input budget, dropped unread


def log(msg: str) -> None:
    print(f"[fanout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class LoadPool:
    """The load processes; rooms are dealt to them round-robin, each room whole to one process."""

    def __init__(self, n: int, target=worker_main):
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child,), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def send(self, per_worker: list[tuple]) -> None:
        for conn, cmd in zip(self.conns, per_worker):
            conn.send(cmd)

    def gather(self, timeout: float = 120.0) -> list:
        out = []
        for conn in self.conns:
            if not conn.poll(timeout):
                raise TimeoutError("a load process did not answer")
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"load process: {value}")
            out.append(value)
        return out

    def call(self, per_worker: list[tuple], timeout: float = 120.0) -> list:
        self.send(per_worker)
        return self.gather(timeout)

    def close(self) -> None:
        try:
            self.call([("exit",)] * len(self.conns), timeout=5)
        except Exception:
            pass
        for proc in self.procs:
            proc.join(2)
            if proc.is_alive():
                proc.terminate()


def run_phase(server: GunicornServer | ServerGroup, pool: LoadPool, tag: str, rooms: int, participants: int,
              warmup: float, seconds: float, stuck: tuple[float, float] | None = None, drain: float = 1.5,
              rate_factor: float = 0.98, with_host: bool = False, transport: str = "ws",
              flood: tuple[int, float, float, float] | None = None, flood_pool: LoadPool | None = None) -> dict:
    """Connect rooms × participants, send for warmup + seconds (then, with `stuck` = (fill, seconds), one
    reader per room stops reading; then, with `flood` = (per room, fill, seconds, chat rate) and `flood_pool`,
    that many members per room flood while the stuck readers still do not read), and return the figures of
    each window. Each participant joins and connects to `server.server_for(its index in the room)`: the one
    server, or one of a ServerGroup's.

    The flooding members (the `flood[0]` before the last of each room) live in `flood_pool`'s process for the
    whole phase (bench.loadgen.FloodWorker): until the flood they send and read like the others, but in no
    window are they measured, neither as senders nor as receivers; the measuring processes only count what
    reaches them from the flooders' slots."""
    n = len(pool.conns)
    plan: list[list] = [[] for _ in range(n)]
    flood_plan: list = []
    flooders = flood[0] if flood and flood_pool is not None and transport == "ws" else 0
    t_setup = time.monotonic()
    for r in range(rooms):
        room_id = f"{tag}-r{r}"
        server.create_room(room_id, "u0", participants, host=with_host)
        members, flooding = [], []
        for j in range(participants):
            at = server.server_for(j)
            body = at.join(room_id, f"u{j}")
            stuck_j = stuck is not None and j == participants - 1
            if participants - 1 - flooders <= j < participants - 1:
                flooding.append((f"u{j}", body["token"], body["ws_url"], at.port))
            elif transport == "rtc":
                members.append((f"u{j}", body["token"], body["rtc"]["url"], stuck_j))
            else:
                members.append((f"u{j}", body["token"], body["ws_url"], stuck_j, at.port))
        plan[r % n].append((room_id, members))
        if flooding:
            flood_plan.append((room_id, flooding))
    # the flooders first: the TIERs their joins cause reach the measuring clients, which connect after them
    flood_info = flood_pool.call([("connect", "127.0.0.1", server.port, flood_plan)])[0] if flooders else None
    info = pool.call([("connect", "127.0.0.1", server.port, plan[i]) for i in range(n)])
    also = f" and {flood_info['clients']} flooders" if flood_info else ""
    log(f"{tag}: {sum(x['clients'] for x in info)} clients{also} connected in {time.monotonic() - t_setup:.1f} s, "
        f"tier fps {sorted({f for x in info for f in x['fps']})} bits {sorted({b for x in info for b in x['bits']})}")
    start = time.monotonic() + 0.5
    windows = [("main", start + warmup, start + warmup + seconds)]
    stuck_at = flood_at = None
    if stuck:
        stuck_at = windows[0][2]
        windows.append(("stuck", stuck_at + stuck[0], stuck_at + stuck[0] + stuck[1]))
    if flooders:
        flood_at = windows[-1][2]
        windows.append(("flood", flood_at + flood[1], flood_at + flood[1] + flood[2]))
    until = windows[-1][2] + drain
    sched = {"start": start, "stop_send": windows[-1][2], "until": until, "windows": windows,
             "stuck_at": stuck_at, "rate_factor": rate_factor, "flood_at": flood_at,
             "outsiders": flood_info["slots"] if flood_info else {}}
    pool.send([("run", dict(sched, phase_seed=1000 * i)) for i in range(n)])
    if flooders:
        flood_pool.send([("run", dict(sched, phase_seed=1000 * n, chat_rate=flood[3]))])
    # the edges of the windows, and (with flooders) the server's /metrics just before the flood, at the flood
    # window's edges and at the end of the drain (when the flooders read their backlog): what its rate limits
    # dropped
    events = [(t, 0, name + edge) for name, a, b in windows for edge, t in (("a", a), ("b", b))]
    if flooders:
        events += [(flood_at - 0.1, 1, "start"), (windows[-1][1], 1, "a"), (windows[-1][2], 1, "b"), (until, 1, "end")]
    marks, scrapes = {}, {}
    for t, kind, key in sorted(events):
        time.sleep(max(0.0, t - time.monotonic()))
        if kind == 0:
            marks[key] = (server.sample(), stats.machine_busy_seconds(), stats.net_counters())
        else:
            scrapes[key] = server.metrics()
    reports = pool.gather(timeout=until - time.monotonic() + 60)
    flood_report = flood_pool.gather(timeout=until - time.monotonic() + 60)[0] if flooders else None
    anomalies = pool.call([("close",)] * n)
    if flooders:
        anomalies.append({f"flooder: {k}": v for k, v in flood_pool.call([("close",)])[0].items()})
    result = {}
    for wi, (name, _, _) in enumerate(windows):
        parts = [rep[wi] for rep in reports]
        (srv_a, busy_a, net_a), (srv_b, busy_b, net_b) = marks[name + "a"], marks[name + "b"]
        fig = stats.window_figures(parts, {k: srv_b[k] - srv_a[k] for k in ("user", "sys", "switches")},
                                   busy_b - busy_a, until)
        secs = fig["seconds"]
        fig["udp_datagrams_per_s"] = round((net_b["udp_out"] - net_a["udp_out"]) / secs, 1)
        fig["tcp_segments_per_s"] = round((net_b["tcp_out"] - net_a["tcp_out"]) / secs, 1)
        # packets on the loopback, both directions (server and clients): UDP for WebRTC, TCP for the WebSocket
        fig["datagrams_per_s"] = fig["udp_datagrams_per_s"] if transport == "rtc" else fig["tcp_segments_per_s"]
        fig["server_threads"] = srv_b["threads"]
        if srv_b.get("redis") is not None:      # a ServerGroup's: redis-server's share of the server CPU
            fig["redis_cpu_pct"] = round(100 * (srv_b["redis"] - srv_a["redis"]) / secs, 1)
        fig["worst_seconds"] = stats.worst_seconds(parts)
        if flood_report is not None:            # the flooders' process is a load process too, not other work
            fw = flood_report["windows"][wi]
            fig["flood_client_cpu_pct"] = round(100 * (fw["cpu_user_s"] + fw["cpu_sys_s"]) / secs, 1)
            fig["other_cpu_pct"] = round(fig["other_cpu_pct"] - fig["flood_client_cpu_pct"], 1)
        if name in ("stuck", "flood"):
            queues: dict[str, list[int]] = {}
            for x in parts:
                for key, vals in x["stuck_queues"].items():
                    queues.setdefault(key, []).extend(vals)
            fig["stuck_queues_max"] = {key: max(v, default=None) for key, v in queues.items()}
        if name == "flood":
            fig["flooders"] = flood_figures(flood_report, wi, parts, scrapes, flooders, secs)
        result[name] = fig
    merged: dict = {}
    for a in anomalies:
        for key, v in a.items():
            merged[key] = merged.get(key, 0) + v
    result["anomalies"] = merged
    time.sleep(1.0)                       # let the server tear the sockets down before the next phase
    return result


def flood_figures(report: dict, wi: int, parts: list[dict], scrapes: dict, per_room: int, secs: float) -> dict:
    """What the flooders did in the flood window (`wi`) and over the whole flood (its start to the end of the
    drain), what reached the others from them, and what the server's rate limits dropped (its /metrics, when it
    has them: ours; for the naive relay, which has no rate limit, those are None)."""
    fw = report["windows"][wi]

    def delta(key: str, a: str, b: str) -> float | None:
        if scrapes.get(a) is None or scrapes.get(b) is None:
            return None
        return scrapes[b].get(key, 0.0) - scrapes[a].get(key, 0.0)

    n = report["flooders"]
    frame_bytes = report["frame_bytes"] or 1
    sent_all = report["flood_frames_sent"]
    relayed_all = sum(x["outsider_frames_relayed_since_flood"] for x in parts)
    unread_end = report.get("backlog_bytes_at_end", 0) // frame_bytes
    return {
        "per_room": per_room, "flooders": n,
        # in the window: frames written to the flooders' sockets (by write time) and, of those the server
        # relayed, the most any one receiver got per flooder (by reception time), summed over the flooders
        "frames_sent": fw["flood_frames_sent"], "frames_sent_per_s_per_flooder": round(fw["flood_frames_sent"] / secs / n, 1),
        "frames_relayed": sum(x["outsider_frames_relayed"] for x in parts),
        "frames_received_by_others": sum(x["outsider_frames_received"] for x in parts),
        "server_pose_rate_drops": delta(METRIC_POSE_RATE, "a", "b"),      # every sender's frames over the tier's rate
        "server_flood_drops": delta(METRIC_FLOOD, "a", "b"),             # the flooders': over their input budget
        "server_poses_in": delta(METRIC_POSE_IN, "a", "b"),
        "server_stale_pose_drops": delta(METRIC_STALE_POSE, "a", "b"),
        "chat_sent": fw["chat_sent"], "chat_rate_limited": fw["chat_rate_limited"],
        "server_chat_rate_drops": delta(METRIC_CHAT_RATE, "a", "b"),
        "whole_flood": {
            "frames_sent": sent_all, "frames_relayed": relayed_all,
            "server_pose_rate_drops": delta(METRIC_POSE_RATE, "start", "end"),
            "server_flood_drops": delta(METRIC_FLOOD, "start", "end"),
            "server_poses_in": delta(METRIC_POSE_IN, "start", "end"),
            # sent − relayed − not yet read from the socket when the run ended: what the server dropped, as the
            # load sees it (the naive relay drops nothing: there, what its process read but had not relayed yet)
            "frames_not_relayed": sent_all - relayed_all - unread_end,
            "chat_sent": report["chat_sent"], "chat_rate_limited": report["chat_rate_limited"],
            "server_chat_rate_drops": delta(METRIC_CHAT_RATE, "start", "end"),
            "unread_frames_at_stop": report.get("backlog_bytes_at_stop", 0) // frame_bytes,
            "unread_frames_at_end": unread_end,
            "relayed_poses_the_flooders_received": report["relayed_poses_received"]},
    }


def search_rooms(server: GunicornServer, pool: LoadPool, label: str, participants: int, steps: list[int],
                 first: dict | None, seconds: float, with_host: bool = False) -> tuple[int, list[dict]]:
    """The most rooms at which p99 ≤ 20 ms with ≥ 99 % delivered, stepping upward to the first failure."""
    best, rows = 0, []
    for rooms in steps:
        if rooms == steps[0] and first is not None:
            fig = first
        else:
            fig = run_phase(server, pool, f"{label}-s{rooms}", rooms, participants, 2.0, seconds,
                            with_host=with_host)["main"]
        ok = fig["p99_ms"] is not None and fig["p99_ms"] <= SEARCH_P99_S * 1000 and fig["delivered_ratio"] >= 0.99
        rows.append({"rooms": rooms, "ok": ok, **{k: fig[k] for k in (
            "p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "server_cpu_pct", "client_cpu_pct")}})
        log(f"{label}: search {rooms} rooms: p99 {fig['p99_ms']} ms, delivered {fig['delivered_ratio']}, "
            f"server cpu {fig['server_cpu_pct']} % -> {'ok' if ok else 'stop'}")
        if not ok:
            break
        best = rooms
    if best == 0 and steps[0] > 5:                 # not even the first step: how far down does it hold?
        sub, more = search_rooms(server, pool, label, participants, [max(1, steps[0] // 2)], None, seconds,
                                 with_host)
        best, rows = sub, rows + more
    return best, rows


STUCK_KEYS = ("p50_ms", "p99_ms", "p99_censored_ms", "max_ms", "delivered_ratio", "server_cpu_pct", "expected",
              "delivered", "frames_lost_for_all", "frames_lost_for_all_sent_by_stuck", "frames_lost_for_some",
              "frames_over_rate_as_sent", "stuck_queues_max", "seconds")
FLOOD_KEYS = STUCK_KEYS + ("client_cpu_pct", "flood_client_cpu_pct", "other_cpu_pct", "flooders")
LIGHT_KEYS = ("p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "server_cpu_pct", "server_cpu_us_per_msg_out",
              "client_cpu_pct", "other_cpu_pct")


def with_stuck(phase: dict, keys: tuple[str, ...]) -> dict:
    """A phase's main figures (restricted to `keys` if given) plus its stuck-reader and flood figures."""
    out = {k: phase["main"][k] for k in keys} if keys else dict(phase["main"])
    if "stuck" in phase:
        out["p99_stuck_ms"] = phase["stuck"]["p99_censored_ms"]
        out["stuck"] = {k: phase["stuck"][k] for k in STUCK_KEYS}
    if "flood" in phase:
        out["p99_flood_ms"] = phase["flood"]["p99_censored_ms"]
        out["flood"] = {k: phase["flood"].get(k) for k in FLOOD_KEYS}
    return out


def flood_goal(fig: dict) -> bool | None:
    """The others' p99 while receivers do not read and senders flood, within the fan-out goal (None: no flood)."""
    p99 = fig.get("p99_flood_ms")
    return None if p99 is None else p99 <= FANOUT_P99_MS


def bench_server(label: str, args, pool: LoadPool, threads: int, search: bool,
                 flood_pool: LoadPool | None = None) -> dict:
    """Main phase (with a stuck reader per room, then `--flood` flooders per room besides), then on a fresh
    server the max-rooms search and a light phase where the baseline is not saturated."""
    stuck = (args.stuck_fill, args.stuck_seconds)
    flood = (args.flood, args.flood_fill, args.flood_seconds, args.flood_chat_rate) if args.flood else None
    env = dict(kv.split("=", 1) for kv in args.env)
    server = GunicornServer(SERVERS[label], threads, env).start()
    log(f"{label}: gunicorn {SERVERS[label]} on port {server.port}, worker pid {server.worker_pid()}")
    try:
        phase = run_phase(server, pool, label, args.rooms, args.participants, args.warmup, args.seconds, stuck,
                          with_host=args.with_host, flood=flood, flood_pool=flood_pool)
        out = dict(with_stuck(phase, ()), anomalies=phase["anomalies"], server_log=server.log_problems())
    finally:
        server.stop()
    log(f"{label}: p50 {out['p50_ms']} ms p99 {out['p99_ms']} ms delivered {out['delivered_ratio']} "
        f"server cpu {out['server_cpu_pct']} % client cpu {out['client_cpu_pct']} % "
        f"p99 stuck {out.get('p99_stuck_ms')} ms p99 flood {out.get('p99_flood_ms')} ms")
    if not search and not args.light_rooms:
        return out
    server = GunicornServer(SERVERS[label], threads, env).start()
    try:
        if search:
            steps = [s for s in SEARCH_STEPS if s >= args.rooms] or [args.rooms]
            first = phase["main"] if steps[0] == args.rooms else None
            out["max_rooms_p99_20ms"], out["search"] = search_rooms(
                server, pool, label, args.participants, steps, first, args.search_seconds, args.with_host)
        if args.light_rooms:
            light = run_phase(server, pool, f"{label}-light", args.light_rooms, args.participants, 2.0,
                              args.search_seconds, stuck, with_host=args.with_host, flood=flood, flood_pool=flood_pool)
            out["light"] = dict(with_stuck(light, LIGHT_KEYS), rooms=args.light_rooms, anomalies=light["anomalies"])
            log(f"{label}: light {args.light_rooms} rooms: p99 {out['light']['p99_ms']} ms, "
                f"p99 stuck {out['light'].get('p99_stuck_ms')} ms, p99 flood {out['light'].get('p99_flood_ms')} ms")
        out["server_log_2"] = server.log_problems()
    finally:
        server.stop()
    return out


RTC_KEYS = ("participants", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "delivered_ratio", "server_cpu_pct",
            "server_cpu_us_per_msg_out", "datagrams_per_s", "msgs_out_per_s", "msgs_per_client_read",
            "kbps_per_receiver", "client_cpu_pct", "other_cpu_pct", "frames_lost_for_all", "frames_over_rate_as_sent")


def compare_transports(args, threads: int) -> dict:
    """Our server with WebRTC participants and with WebSocket participants, at the same room count, one phase
    each on a fresh server (alternating `--repeat` times): the WebRTC figures, and the WebSocket's beside them."""
    import statistics
    env = dict(kv.split("=", 1) for kv in args.env)
    runs: dict[str, list[dict]] = {"rtc": [], "ws": []}
    pools = {"rtc": LoadPool(args.procs, rtcload.worker_main), "ws": LoadPool(args.procs)}
    try:
        for i in range(args.repeat):
            for transport in ("rtc", "ws") if i % 2 == 0 else ("ws", "rtc"):
                server = GunicornServer(SERVERS["ours"], threads, env).start()
                try:
                    phase = run_phase(server, pools[transport], f"{transport}", args.rooms, args.participants,
                                      args.warmup, args.seconds, transport=transport)
                finally:
                    server.stop()
                fig = dict(phase["main"], participants=args.rooms * args.participants, anomalies=phase["anomalies"])
                runs[transport].append(fig)
                log(f"{transport} run {i}: p50 {fig['p50_ms']} p99 {fig['p99_ms']} ms, delivered {fig['delivered_ratio']}, "
                    f"server cpu {fig['server_cpu_pct']} %, {fig['datagrams_per_s']} packets/s")
    finally:
        for pool in pools.values():
            pool.close()

    def median(figs: list[dict]) -> dict:
        out = {}
        for k in RTC_KEYS:
            values = [f[k] for f in figs if f.get(k) is not None]
            out[k] = round(statistics.median(values), 3) if values else None
        return out
    rtc, ws = median(runs["rtc"]), median(runs["ws"])
    return {"transport": "rtc", **rtc, "websocket": ws,
            "ratios": {"cpu_rtc_over_ws": stats.ratio(rtc["server_cpu_pct"], ws["server_cpu_pct"]),
                       "p99_rtc_over_ws": stats.ratio(rtc["p99_ms"], ws["p99_ms"]),
                       "datagrams_rtc_over_ws": stats.ratio(rtc["datagrams_per_s"], ws["datagrams_per_s"])},
            "runs": runs}


PARSER_KEYS = ("p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "server_cpu_pct", "server_cpu_us_per_msg_out",
               "client_cpu_pct", "other_cpu_pct")


def compare_parsers(args, pool: LoadPool, threads: int) -> dict:
    """Our server with its own frame parser and with wsproto's, one main phase each, alternating `--parsers`
    times on fresh servers: the medians, and wsproto's / ours."""
    import statistics
    runs: dict[str, list[dict]] = {"own": [], "wsproto": []}
    for i in range(args.parsers):
        for parser in ("own", "wsproto") if i % 2 == 0 else ("wsproto", "own"):
            env = dict(kv.split("=", 1) for kv in args.env) | {"AVATAR_WS_PARSER": parser}
            server = GunicornServer(SERVERS["ours"], threads, env).start()
            try:
                phase = run_phase(server, pool, f"parser-{parser}", args.rooms, args.participants, args.warmup,
                                  args.seconds)
            finally:
                server.stop()
            fig = {k: phase["main"].get(k) for k in PARSER_KEYS}
            runs[parser].append(fig)
            log(f"parser {parser} run {i}: p99 {fig['p99_ms']} ms, cpu {fig['server_cpu_pct']} %, "
                f"{fig['server_cpu_us_per_msg_out']} us/msg")
    medians = {parser: {k: round(statistics.median(r[k] for r in rs), 3) for k in PARSER_KEYS if rs[0].get(k) is not None}
               for parser, rs in runs.items()}
    return {**medians, "runs": runs,
            "ratios_wsproto_over_own": {k: stats.ratio(medians["wsproto"].get(k), medians["own"].get(k))
                                        for k in ("p99_ms", "server_cpu_pct", "server_cpu_us_per_msg_out")}}


@contextlib.contextmanager
def redis_server(url: str):
    """(url, pid) for `--redis`: "auto" starts a private redis-server and stops it after; otherwise the given
    server, with its pid when it runs on this machine (so its CPU can be counted), else None."""
    if url == "auto":
        from bench.redisserver import RedisServer
        with RedisServer() as server:
            yield server.url, server.proc.pid
        return
    import redis
    pid = redis.Redis.from_url(url, socket_connect_timeout=5).info("server").get("process_id")
    try:
        local = "redis" in pathlib.Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        local = False
    if not local:
        log(f"redis-server at {url} is not a process of this machine: its CPU is not counted")
    yield url, pid if local else None


CROSS_KEYS = ("p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "server_cpu_pct", "redis_cpu_pct",
              "client_cpu_pct", "other_cpu_pct")
CROSS_P99_MS, CROSS_DELIVERED, CROSS_CPU_RATIO = 15.0, 0.999, 2.0


def compare_workers(args, pool: LoadPool, threads: int, machine: dict, flood_pool: LoadPool | None = None) -> dict:
    """Ours in one process with the in-process bus (bench_server's main, stuck and flood phases), then `--workers`
    processes sharing the rooms through Redis at the same size, participant j of each room on process j % N, so
    that most deliveries cross processes. CPU per message out: of the one worker; of every gunicorn process of
    the N and redis-server."""
    # No flooders here: they would be members the cross phase does not have (its rooms are the same size)
    one = bench_server("ours", args, pool, threads, search=False, flood_pool=None)
    env = dict(kv.split("=", 1) for kv in args.env)
    with redis_server(args.redis) as (url, redis_pid):
        group = ServerGroup(SERVERS["ours"], args.workers, threads, url, env, redis_pid).start()
        log(f"cross: {args.workers} x gunicorn {SERVERS['ours']} on ports {[s.port for s in group.servers]}, "
            f"worker pids {group.worker_pids()}, redis {url} (pid {redis_pid})")
        try:
            phase = run_phase(group, pool, "cross", args.rooms, args.participants, args.warmup, args.seconds)
            fig = dict(phase["main"], anomalies=phase["anomalies"], server_log=group.log_problems())
        finally:
            group.stop()
    cross = {"workers": args.workers, **{k: fig.get(k) for k in CROSS_KEYS},
             "cpu_per_msg_us": fig["server_cpu_us_per_msg_out"]}
    cpu_ratio = stats.ratio(cross["cpu_per_msg_us"], one["server_cpu_us_per_msg_out"])
    log(f"cross: p50 {cross['p50_ms']} ms p99 {cross['p99_ms']} ms delivered {cross['delivered_ratio']} "
        f"cpu {cross['server_cpu_pct']} % (redis {cross['redis_cpu_pct']} %), {cross['cpu_per_msg_us']} us/msg "
        f"against {one['server_cpu_us_per_msg_out']} in one process")
    out = {k: one.get(k) for k in ("p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "server_cpu_pct",
                                   "client_cpu_pct", "other_cpu_pct", "p99_stuck_ms", "p99_flood_ms")}
    out["cpu_per_msg_us"] = one["server_cpu_us_per_msg_out"]
    out["cross_worker"] = cross
    out["cpu_ratio"] = cpu_ratio
    out["goal_met"] = {
        "cross_worker_p99_le_15ms": cross["p99_ms"] is not None and cross["p99_ms"] <= CROSS_P99_MS,
        "cross_worker_delivered_ge_0.999": (cross["delivered_ratio"] or 0) >= CROSS_DELIVERED,
        "cpu_ratio_le_2": cpu_ratio is not None and cpu_ratio <= CROSS_CPU_RATIO,
        "others_p99_under_flood_le_goal": flood_goal(one)}
    out["notes"] = notes({"ours": one, "cross_worker": fig}, machine)
    if redis_pid is None:
        out["notes"].append("redis-server's CPU is not counted (not a process of this machine)")
    out["detail"] = {"one_process": one, "cross_worker": fig}
    return out


def summary(results: dict, machine: dict, args, elapsed: float) -> dict:
    ours, base = results["ours"], results["baseline"]
    keys = ("p50_ms", "p99_ms", "delivered_ratio", "msgs_out_per_s", "bytes_per_pose_frame", "kbps_per_receiver",
            "server_cpu_pct", "server_cpu_us_per_msg_out", "client_cpu_pct", "other_cpu_pct", "p99_stuck_ms",
            "p99_flood_ms", "max_rooms_p99_20ms", "light")
    out = {k: ours.get(k) for k in keys}
    out["baseline"] = {k: base.get(k) for k in keys}
    out["ratios"] = {
        "p99_ratio": stats.ratio(ours["p99_ms"], base["p99_ms"]),
        "p50_ratio": stats.ratio(ours["p50_ms"], base["p50_ms"]),
        "cpu_ratio": stats.ratio(ours["server_cpu_pct"], base["server_cpu_pct"]),
        "cpu_per_msg_ratio": stats.ratio(ours["server_cpu_us_per_msg_out"], base["server_cpu_us_per_msg_out"]),
        "p99_stuck_ratio": stats.ratio(ours.get("p99_stuck_ms"), base.get("p99_stuck_ms")),
        "p99_flood_ratio": stats.ratio(ours.get("p99_flood_ms"), base.get("p99_flood_ms"))}
    if ours.get("light") and base.get("light"):
        lo, lb = ours["light"], base["light"]
        out["ratios"].update(light_p99_ratio=stats.ratio(lo["p99_ms"], lb["p99_ms"]),
                             light_cpu_ratio=stats.ratio(lo["server_cpu_pct"], lb["server_cpu_pct"]),
                             light_p99_stuck_ratio=stats.ratio(lo.get("p99_stuck_ms"), lb.get("p99_stuck_ms")),
                             light_p99_flood_ratio=stats.ratio(lo.get("p99_flood_ms"), lb.get("p99_flood_ms")))
    out["goal_met"] = {"others_p99_under_flood_le_goal": flood_goal(ours)}
    out["flood"] = flood_summary(ours)
    out["baseline"]["flood"] = flood_summary(base)
    out["notes"] = notes(results, machine)
    out["config"] = {k: getattr(args, k) for k in ("rooms", "participants", "seconds", "warmup", "stuck_fill",
                                                   "stuck_seconds", "search_seconds", "light_rooms", "procs", "quick",
                                                   "env", "with_host", "flood", "flood_fill", "flood_seconds",
                                                   "flood_chat_rate")}
    out["machine"] = dict(machine, loadavg_at_end=os.getloadavg()[0])
    out["detail"] = {"ours": ours, "baseline": base}
    out["elapsed_s"] = round(elapsed, 1)
    return out


def flood_summary(fig: dict) -> dict | None:
    """The flood window at a glance: the others' figures, the goal, and what the server dropped."""
    flood = fig.get("flood")
    if not flood:
        return None
    fl = flood["flooders"]
    return {"p99_ms": flood["p99_ms"], "p99_censored_ms": flood["p99_censored_ms"],
            "delivered_ratio": flood["delivered_ratio"], "goal_p99_ms": FANOUT_P99_MS,
            "per_room": fl["per_room"], "frames_sent": fl["frames_sent"],
            "frames_sent_per_s_per_flooder": fl["frames_sent_per_s_per_flooder"],
            "frames_relayed": fl["frames_relayed"], "server_pose_rate_drops": fl["server_pose_rate_drops"],
            "chat_sent": fl["chat_sent"], "chat_rate_limited": fl["chat_rate_limited"],
            "flood_client_cpu_pct": flood["flood_client_cpu_pct"], "server_cpu_pct": flood["server_cpu_pct"]}


def notes(results: dict, machine: dict) -> list[str]:
    """Plain-language caveats for reading the figures."""
    out = []
    if machine.get("busy_before_pct", 0) > 20:
        out.append(f"other work kept the machine {machine['busy_before_pct']} % busy before the run")
    for label, r in results.items():
        for name, fig in (("main", r), ("light", r.get("light") or {})):
            if (fig.get("other_cpu_pct") or 0) > 20:
                out.append(f"{label} {name}: other work used {fig['other_cpu_pct']} % CPU during the window")
        if (r.get("delivered_ratio") or 0) < 0.99 or (r.get("p99_ms") or 0) > 1000:
            out.append(f"{label} fell behind in the main phase (delivered {r.get('delivered_ratio')}, p99 "
                       f"{r.get('p99_ms')} ms): its figures are of a saturated server; compare 'light' too")
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--participants", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--stuck-fill", type=float, default=5.0, help="seconds between the stop of reading and its window")
    ap.add_argument("--stuck-seconds", type=float, default=8.0)
    ap.add_argument("--flood", type=int, default=1, metavar="N",
                    help="flooding senders per room in a last window, while the stuck readers still do not read: "
                         "POSE as fast as their sockets take it, CHAT above the chat rate (0: no flood window)")
    ap.add_argument("--flood-fill", type=float, default=2.0, help="seconds between the flood's start and its window")
    ap.add_argument("--flood-seconds", type=float, default=8.0)
    ap.add_argument("--flood-chat-rate", type=float, default=50.0,
                    help="CHAT messages a second per flooder (the server allows 5 a second, bursts of 20)")
    ap.add_argument("--search-seconds", type=float, default=8.0)
    ap.add_argument("--no-search", action="store_true", help="skip the max-rooms search")
    ap.add_argument("--light-rooms", type=int, default=3,
                    help="rooms of a second, lighter phase (with a stuck reader) that the baseline can carry; 0: none")
    ap.add_argument("--no-baseline-search", action="store_true", help="search our server's max rooms only")
    ap.add_argument("--procs", type=int, default=2, help="load-generating processes")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rooms x 4 participants x 3 s")
    ap.add_argument("--only", choices=sorted(SERVERS), help="run one server only (for debugging)")
    ap.add_argument("--env", action="append", default=[], metavar="AVATAR_KEY=VALUE",
                    help="an extra environment variable for both servers (repeatable), e.g. AVATAR_RATE_BURST=6")
    ap.add_argument("--with-host", action="store_true",
                    help="create rooms with the AI host (an extra participant; the baseline has none)")
    ap.add_argument("--transport", choices=("ws", "rtc"), default="ws",
                    help="rtc: WebRTC participants against WebSocket ones at --rooms (no baseline, no search)")
    ap.add_argument("--repeat", type=int, default=1, help="with --transport rtc: runs of each, alternating")
    ap.add_argument("--parsers", type=int, default=0, metavar="N",
                    help="instead: our server with its own WebSocket frame parser and with wsproto's, N times each")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="N >= 2: ours in one process, then in N processes sharing the rooms through --redis "
                         "(participant j of a room on process j %% N); ours only, no search or light phase")
    ap.add_argument("--redis", metavar="URL",
                    help="with --workers: redis://host:port/db, or auto (a private redis-server for the run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rooms, args.participants, args.seconds, args.warmup, args.no_search = 2, 4, 3.0, 1.0, True
        args.stuck_fill, args.stuck_seconds, args.light_rooms = 2.0, 3.0, 0
        args.flood_fill, args.flood_seconds = 1.0, 3.0
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if args.flood < 0 or args.flood and args.transport == "ws" and not args.parsers \
            and args.flood > args.participants - 3:
        ap.error("--flood N: 0 <= N <= participants - 3 (each room keeps a stuck reader and two measured members)")
    if args.workers == 1 and args.redis:
        ap.error("--redis is for --workers N (N >= 2)")
    if args.workers > 1:
        if not args.redis:
            ap.error("--workers N needs --redis URL (or --redis auto)")
        if args.transport != "ws" or args.parsers or args.only == "baseline":
            ap.error("--workers compares our server over the WebSocket: not with --transport rtc, --parsers or "
                     "--only baseline")
        args.no_search, args.light_rooms = True, 0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    machine = stats.machine()
    busy0 = stats.machine_busy_seconds()
    time.sleep(2.0)
    machine["busy_before_pct"] = round(50 * (stats.machine_busy_seconds() - busy0), 1)
    if machine["busy_before_pct"] > 20:
        log(f"warning: other work keeps the machine {machine['busy_before_pct']} % busy (100 = one core); "
            "figures will be noisy")
    log(f"machine: {machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}, "
        f"load {machine['loadavg_at_start']:.2f}")
    threads = max(600, max(SEARCH_STEPS) * args.participants + 64) if not args.no_search else \
        max(600, args.rooms * args.participants + 64)
    if args.transport == "rtc":
        out = dict(compare_transports(args, threads), machine=machine,
                   config={k: getattr(args, k) for k in ("rooms", "participants", "seconds", "warmup", "repeat", "env")})
        print(json.dumps(out, default=str) if args.json else json.dumps(out, indent=2, default=str))
        return 0
    pool = LoadPool(args.procs)
    # the flooders' own load process (bench.loadgen.FloodWorker), for the phases with stuck readers
    flood_pool = LoadPool(1, flood_main) if args.flood and not args.parsers else None
    try:
        return run_benchmarks(args, pool, flood_pool, threads, machine, t0)
    finally:
        if flood_pool is not None:
            flood_pool.close()


def run_benchmarks(args, pool: LoadPool, flood_pool: LoadPool | None, threads: int, machine: dict, t0: float) -> int:
    results = {}
    if args.parsers:
        try:
            out = dict(compare_parsers(args, pool, threads), machine=machine,
                       config={"rooms": args.rooms, "participants": args.participants, "seconds": args.seconds})
        finally:
            pool.close()
        print(json.dumps(out) if args.json else json.dumps(out, indent=2))
        return 0
    if args.workers > 1:
        try:
            out = compare_workers(args, pool, threads, machine, flood_pool)
        finally:
            pool.close()
        out["config"] = {k: getattr(args, k) for k in ("rooms", "participants", "seconds", "warmup", "stuck_fill",
                                                       "stuck_seconds", "procs", "quick", "env", "with_host",
                                                       "workers", "redis", "flood", "flood_fill", "flood_seconds",
                                                       "flood_chat_rate")}
        out["machine"] = dict(machine, loadavg_at_end=os.getloadavg()[0])
        out["elapsed_s"] = round(time.monotonic() - t0, 1)
        print(json.dumps(out) if args.json else json.dumps(out, indent=2))
        return 0
    try:
        for label in ([args.only] if args.only else SERVERS):
            search = not args.no_search and (label == "ours" or not args.no_baseline_search)
            results[label] = bench_server(label, args, pool, threads, search, flood_pool)
    finally:
        pool.close()
    if args.only:
        out = results[args.only]
        out["goal_met"] = {"others_p99_under_flood_le_goal": flood_goal(out)}
    else:
        out = summary(results, machine, args, time.monotonic() - t0)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
