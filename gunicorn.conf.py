"""gunicorn settings: `gunicorn -c gunicorn.conf.py 'run:create_app()'`. One worker unless AVATAR_WORKERS says
more, which needs AVATAR_REDIS_URL (rooms are shared through Redis); each open WebSocket holds one of a
worker's threads. AVATAR_BIND and AVATAR_GUNICORN_THREADS override."""
import os
import shutil
import tempfile

import config as avatar_config

_settings = avatar_config.load()
bind = _settings["BIND"]
workers = _settings.WORKERS                # more than one needs AVATAR_REDIS_URL (rooms are shared there)
worker_class = "gthread"
threads = _settings["GUNICORN_THREADS"]
worker_connections = threads + 100
keepalive = 5
timeout = 60
graceful_timeout = 10                  # SIGTERM: the drain (up to 3 s), then the sockets' threads
accesslog = _settings.ACCESS_LOG or None
loglevel = _settings.LOG_LEVEL
max_requests = 0                       # no worker recycling: each dead worker leaves metrics files behind


def on_starting(server):
    """Prometheus multiprocess mode: every worker writes its metrics to files in one directory, wiped now (a
    previous run's files would be summed in); METRICS_DIR or a private temporary directory."""
    path = _settings.METRICS_DIR or os.path.join(tempfile.gettempdir(), f"avatar-metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if not _settings.METRICS_DIR:
        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)


def worker_exit(server, worker):
    """Close every WebRTC peer connection (each gets a BYE) before the process goes."""
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("avatar")
    if services is not None and services.rtc is not None:
        services.rtc.close_all()


def post_worker_init(worker):
    """Start sampling this worker's metrics and loading the AI host's models (readiness waits for them)."""
    services = getattr(worker.wsgi, "extensions", {}).get("avatar")
    if services is not None:                     # (bench.naive_relay has none of this)
        _drain_on_sigterm(worker, services)
        services.sampler.start()
        if _settings.PRELOAD_MODELS:
            services.hosts.preload()
    _gc_freeze()


def _drain_on_sigterm(worker, services):
    """SIGTERM (a restart, a deploy): tell every participant to come back before gunicorn's own handling, which
    then waits at most graceful_timeout for the sockets' threads."""
    import signal
    import threading

    def on_term(sig, frame):
        def drain():
            try:
                services.drain()
            finally:
                worker.alive = False             # what gunicorn's own SIGTERM handler does
        threading.Thread(target=drain, name="drain", daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)


def _gc_freeze():
    """Objects made at start-up live as long as the worker: keep them out of the collector's full passes,
    which otherwise pause every socket for tens of milliseconds."""
    import gc
    import sys

    gc.collect()
    gc.freeze()
    # The reader, the writer, the AI host's loop and its model threads pass the GIL around constantly: hand it
    # over after 1 ms instead of 5, so none waits long behind another.
    sys.setswitchinterval(0.001)
