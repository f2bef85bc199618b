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
