"""The process's figures as Prometheus metrics. Nothing on the hot path touches prometheus_client: the rooms
count in plain per-thread counters (meeting.traffic) and a sampler copies them here, once a second in each
gunicorn worker and at every scrape. Under several workers prometheus_client's multiprocess mode (the
directory in PROMETHEUS_MULTIPROC_DIR, set up by gunicorn.conf.py) sums them; gauges are live sums."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)
STAGES = {"end_detected": "vad_end", "asr_done": "asr", "llm_first_token": "llm_first_token",   # TurnTimes field: label
          "first_sentence": "first_sentence", "tts_done": "tts", "lipsync_done": "lipsync", "first_audio": "send"}
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The metric families, in a registry of the app's own (two apps in one process share nothing)."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.rooms = Gauge("avatar_rooms", "Open rooms", registry=r, multiprocess_mode="livesum")
        self.participants = Gauge("avatar_participants", "Connected participants by transport and tier (fps)",
                                  ["transport", "fps"], registry=r, multiprocess_mode="livesum")
        self.messages_in = Counter("avatar_messages_in", "Messages received from participants", ["kind"], registry=r)
        self.pose_bytes_in = Counter("avatar_pose_bytes_in", "Pose payload bytes received (÷ pose messages in: bytes "
                                     "per pose frame)", registry=r)
        self.messages_out = Counter("avatar_messages_out", "Messages handed to transports for participants", registry=r)
        self.dropped = Counter("avatar_dropped", "Messages dropped, by reason: stale_pose (a newer frame replaced it; "
                               "by design), pose_rate, chat_rate, bad_message", ["reason"], registry=r)
        self.closes = Counter("avatar_channel_closes", "Data channels closed by the server, by close code", ["code"],
                              registry=r)
        self.rtc_peers = Gauge("avatar_rtc_peers", "Open WebRTC peer connections", registry=r,
                               multiprocess_mode="livesum")
        self.host_stage = Histogram("avatar_host_stage_seconds", "The AI host's answer, stage by stage (each stage's "
                                    "own time)", ["stage"], buckets=BUCKETS, registry=r)
        self.host_first_audio = Histogram("avatar_host_first_audio_seconds", "From a question (end of speech, or "
                                          "chat) to the host's first audio", ["source"], buckets=BUCKETS, registry=r)
        self.host_answers = Counter("avatar_host_answers", "The AI host's answers by outcome", ["outcome"], registry=r)
        self.model_loaded = Gauge("avatar_model_loaded", "1 when a model is loaded in this process", ["model"],
                                  registry=r, multiprocess_mode="livemax")
        # Labelled by the backplane ("redis"), so that a server without one exports no sample that could alert.
        self.redis_subscribed = Gauge("avatar_redis_subscribed", "1 when this process holds its Redis subscriptions "
                                      "(0: it hears nothing from the other processes); no sample without Redis",
                                      ["backplane"], registry=r, multiprocess_mode="livemin")
        self.redis_rtt = Gauge("avatar_redis_rtt_seconds", "The last heartbeat's round trip to Redis", ["backplane"],
                               registry=r, multiprocess_mode="livemax")
        self.redis_resubscriptions = Counter("avatar_redis_resubscriptions", "Times a process subscribed again "
                                             "after losing Redis", registry=r)
        self.redis_ordered = Counter("avatar_redis_ordered", "Chat and presence events sent again to a process "
                                     "that missed them (resent) or given up (lost)", ["outcome"], registry=r)
        self.sampled = Gauge("avatar_metrics_sampled_timestamp_seconds", "When this process last sampled its figures",
                             registry=r, multiprocess_mode="livemax")

    def exposition(self) -> bytes:
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class Sampler:
    """Copies the rooms' counters and states into `Metrics`."""

    def __init__(self, services, metrics: Metrics):
        self.services, self.m = services, metrics
        self._seen: Tally = Tally()
        self._hosts: dict[int, tuple[int, int]] = {}      # id(host) -> (turns, failures) already counted
        self._labels: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, interval: float = 1.0) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(interval,), name="metrics-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sample()
            except Exception:                       # a sampling bug must not end the sampling
                log.exception("metrics: sampling failed")

    def sample(self) -> None:
        with self._lock:
            svc, m = self.services, self.m
            counts = svc.manager.traffic.totals()       # first the folded counts, then the live ones (no double count)
            rooms = svc.manager.rooms()
            by_transport: Tally = Tally()
            for room in rooms:
                fps = str(room.tier.fps)
                for member in room.local_participants():
                    counts["out.messages"] += member.outbox.sent
                    counts["drop.stale_pose"] += member.outbox.dropped_poses
                    if member.connected:
                        by_transport[(getattr(member.channel, "transport", "host"), fps)] += 1
            self._counters(counts)
            m.rooms.set(len(rooms))
            # A label set seen once is set to 0 when empty, never removed: in multiprocess mode a removed child
            # would linger in this process's file with its last value.
            self._labels |= set(by_transport)
            for transport, fps in self._labels:
                m.participants.labels(transport, fps).set(by_transport.get((transport, fps), 0))
            m.rtc_peers.set(svc.rtc.stats.peers if svc.rtc else 0)
            self._hosts_sample()
            if svc.bus is not None:
                self._bus(svc.bus.stats)
            models = svc.hosts.runtime.models
            for key in models.known():
                m.model_loaded.labels(key).set(1 if models.loaded(key) else 0)
            m.sampled.set(time.time())

    def _counters(self, counts: Tally) -> None:
        m = self.m
        for key, value in counts.items():
            delta = value - self._seen[key]
            if delta <= 0:
                continue
            self._seen[key] = value
            group, _, name = key.partition(".")
            if group == "in" and name == "pose_bytes":
                m.pose_bytes_in.inc(delta)
            elif group == "in":
                m.messages_in.labels(name).inc(delta)
            elif group == "out":
                m.messages_out.inc(delta)
            elif group == "drop":
                m.dropped.labels(name).inc(delta)
            elif group == "close":
                m.closes.labels(name).inc(delta)

    def _bus(self, stats) -> None:
        m = self.m
        m.redis_subscribed.labels("redis").set(1 if stats.connected else 0)
        m.redis_rtt.labels("redis").set(stats.rtt_ms / 1000)
        for key, value, counter in (("bus.resubscriptions", stats.resubscriptions, m.redis_resubscriptions),
                                    ("bus.resent", stats.resent, m.redis_ordered.labels("resent")),
                                    ("bus.lost", stats.lost, m.redis_ordered.labels("lost"))):
            if value > self._seen[key]:
                counter.inc(value - self._seen[key])
                self._seen[key] = value
            elif key == "bus.resubscriptions":
                counter.inc(0)                    # the series exists from the start (alerts can use increase())

    def _hosts_sample(self) -> None:
        live = {}
        for record in self.services.hosts.records():
            host = record.host
            if host is None:
                continue
            turns, failures = self._hosts.get(id(host), (0, 0))
            new = min(host.turn_count - turns, len(host.turns))
            for turn in host.turns[len(host.turns) - new:] if new > 0 else []:
                self._observe(turn)
            if host.failures > failures:
                self.m.host_answers.labels("failed").inc(host.failures - failures)
            if host.turn_count > turns:
                self.m.host_answers.labels("answered").inc(host.turn_count - turns)
            live[id(host)] = (host.turn_count, host.failures)
        self._hosts = live

    def _observe(self, turn) -> None:
        times = turn.as_json()                        # each stage's own share, as GET /api/meeting/<room>/host
        for field, stage in STAGES.items():
            if (ms := times.get(f"{field}_stage_ms")) is not None:
                self.m.host_stage.labels(stage).observe(max(0.0, ms / 1000))
        if times["first_audio_ms"] is not None:
            self.m.host_first_audio.labels(turn.source).observe(max(0.0, times["first_audio_ms"] / 1000))
