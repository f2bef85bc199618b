"""gunicorn settings: `gunicorn -c gunicorn.conf.py 'run:create_app()'`. Rooms live in one process, so one
worker; each open WebSocket holds one of its threads. AVATAR_BIND and AVATAR_GUNICORN_THREADS override."""
import os

import config as avatar_config

_settings = avatar_config.load()
bind = _settings["BIND"]
workers = 1
worker_class = "gthread"
threads = _settings["GUNICORN_THREADS"]
worker_connections = threads + 100
keepalive = 5
timeout = 60
graceful_timeout = 5
accesslog = os.environ.get("AVATAR_ACCESS_LOG") or None
loglevel = os.environ.get("AVATAR_LOG_LEVEL", "info")


def worker_exit(server, worker):
    """Close every WebRTC peer connection (each gets a BYE) before the process goes."""
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("avatar")
    if services is not None and services.rtc is not None:
        services.rtc.close_all()


def post_worker_init(worker):
    """Objects made at start-up live as long as the worker: keep them out of the collector's full passes,
    which otherwise pause every socket for tens of milliseconds."""
    import gc
    import sys

    gc.collect()
    gc.freeze()
    # The reader, the writer, the AI host's loop and its model threads pass the GIL around constantly: hand it
    # over after 1 ms instead of 5, so none waits long behind another.
    sys.setswitchinterval(0.001)
