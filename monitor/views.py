"""/metrics (Prometheus text), /health (the process answers) and /ready (it can take meetings)."""
from __future__ import annotations

import os
import time

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from meeting.errors import MeetingError

bp = Blueprint("monitor", __name__)
_STARTED = time.time()


def _services():
    return current_app.extensions["avatar"]


@bp.get("/metrics")
def metrics():
    svc = _services()
    svc.sampler.sample()                  # this process's figures are fresh; the others' are at most 1 s old
    return Response(svc.metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


@bp.get("/health")
def health():
    return jsonify(status="ok", pid=os.getpid(), uptime_s=round(time.time() - _STARTED, 1))


@bp.get("/ready")
def ready():
    """200 when this process takes joins, its AI host's models are loaded (a first call starts loading them) and,
    with Redis, Redis answers and its subscriptions are held; 503 with what it waits for otherwise."""
    svc = _services()
    checks = {"accepting": not svc.draining, "models": svc.hosts.models_state()}
    waiting = []
    if svc.draining:
        waiting.append("accepting")
    if checks["models"] not in ("loaded", "off"):
        waiting.append("models")
    if svc.bus is not None:                  # Redis answers, and this process holds its subscriptions
        try:
            checks["redis_rtt_ms"] = round(svc.bus.ping(), 2)
        except MeetingError as exc:
            checks["redis"] = exc.message
            waiting.append("redis")
        if not svc.bus.stats.connected:
            waiting.append("redis_subscription")
    return jsonify(ready=not waiting, waiting_for=waiting, checks=checks), 200 if not waiting else 503
