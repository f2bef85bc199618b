"""The app factory. `python run.py` starts the development server; production runs under gunicorn:
    gunicorn -c gunicorn.conf.py 'run:create_app()'
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import pathlib
import re
import time
from dataclasses import dataclass, field

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

import config as config_module
from avatars.store import AvatarStore
from connect import api, avatars, chat, pages, recordings, sessions, websocket
from connect.reader import SocketReader
from connect.redisbus import RedisBus
from connect.rtc import RtcService
from connect.tokens import JoinTokens
from connect.writer import SocketWriter
from meeting.manager import MeetingManager, MeetingSettings
from meeting.recording import RecordingStore
from monitor import views as monitor_views
from monitor.metrics import Metrics, Sampler
from pipeline.hosts import HostManager
from wire.protocol import CloseCode

ROOT = pathlib.Path(__file__).parent
log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the app's parts share, kept in app.extensions["avatar"] (no module globals)."""
    config: config_module.Settings
    manager: MeetingManager
    tokens: JoinTokens
    writer: SocketWriter
    reader: SocketReader
    hosts: HostManager
    static_version: str
    rtc: RtcService | None = None
    metrics: Metrics | None = None
    sampler: Sampler | None = None
    draining: bool = False                 # shutting down: no new joins (/ready says so)
    bus: RedisBus | None = None            # with REDIS_URL: rooms shared with other processes
    recordings: RecordingStore | None = None
    avatars: AvatarStore | None = None
    replays: dict = field(default_factory=dict)      # recording id -> meeting.replay.Replayer

    def drain(self, timeout: float = 3.0) -> None:
        """Shutting down (SIGTERM): refuse new joins, tell every participant to come back (1012; the page rejoins
        with backoff), close the WebRTC peers, and wait up to `timeout` for the sockets to close."""
        self.draining = True
        rooms = self.manager.rooms()
        for room in rooms:                # recordings end here, whole (with Redis the page resumes elsewhere)
            if room.recorder is not None:
                room.stop_recording()
        log.info("draining: %d rooms, telling %d participants to reconnect", len(rooms),
                 sum(r.connected_count for r in rooms))
        for room in rooms:                # with Redis their places stay there: they resume in another process
            for member in room.local_participants():
                if self.bus is not None and member.channel is not None and not member.is_host:
                    channel = member.channel
                    if room.detach(member):
                        channel.close(CloseCode.RESTARTING, "server restarting: join again")
        if self.rtc is not None:
            self.rtc.close_all(CloseCode.RESTARTING, "server restarting: join again", timeout)
        for room in rooms:
            for member in room.local_participants():
                if member.channel is not None and not member.is_host:
                    member.channel.close(CloseCode.RESTARTING, "server restarting: join again")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(m.connected and not m.is_host
                                                  for r in self.manager.rooms() for m in r.local_participants()):
            time.sleep(0.05)

    def jitsi_script_url(self) -> str:
        return self.config["JITSI_SCRIPT_URL"] or f"https://{self.config['JITSI_DOMAIN']}/external_api.js"

    def jitsi(self, room_id: str) -> dict | None:
        domain = self.config["JITSI_DOMAIN"]
        if not domain:
            return None
        name = re.sub(r"[^A-Za-z0-9]", "", f"{self.config['JITSI_ROOM_PREFIX']}{room_id}")
        return {"domain": domain, "room_name": name, "script_url": self.jitsi_script_url()}


def create_app(config: dict | None = None) -> Flask:
    testing = bool((config or {}).get("TESTING"))
    settings = config_module.load(dict(config_module.TESTING, **config) if testing else config)
    app = Flask(__name__, static_folder=str(ROOT / "static"), template_folder=str(ROOT / "templates"))
    app.config.update(settings.as_dict())
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_JSON_BYTES
    bus = None
    if settings.REDIS_URL:
        bus = RedisBus(settings.REDIS_URL, settings.REDIS_PREFIX, settings.REDIS_HEARTBEAT, settings.REDIS_RETRY,
                       settings.JOIN_TOKEN_TTL, settings.RESUME_GRACE, settings.REDIS_BATCH_MS).start()
    app.extensions["avatar"] = Services(
        config=settings,
        manager=MeetingManager(MeetingSettings.of(settings), bus=bus),
        tokens=JoinTokens(settings["SECRET_KEY"], settings["JOIN_TOKEN_TTL"], settings["JOIN_TOKEN_AUDIENCE"],
                          spent=bus),
        writer=SocketWriter(settings["WS_PING_INTERVAL"]),
        reader=SocketReader(),
        hosts=HostManager(settings, bus),
        static_version=_static_version(),
        bus=bus,
        recordings=RecordingStore(settings.RECORDINGS_DIR, settings.RECORDING_MAX_MB << 20),
        avatars=AvatarStore(settings.PHOTO_AVATARS_DIR, settings.PHOTO_MAX_MB << 20, settings.PHOTO_MAX_MEGAPIXELS * 10**6))
    services = app.extensions["avatar"]
    services.manager.on_open.append(lambda room: services.hosts.open(room, room.wants_host))
    services.rtc = RtcService(settings, services) if settings["RTC_ENABLED"] else None
    services.manager.on_close.append(services.hosts.close)
    services.metrics = Metrics()
    services.sampler = Sampler(services, services.metrics)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.minutes_bp)
    app.register_blueprint(api.stats_bp)
    app.register_blueprint(recordings.bp)
    app.register_blueprint(avatars.bp)
    app.register_blueprint(chat.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(monitor_views.bp)
    websocket.init_app(app)
    sessions.init_app(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.after_request(_read_refused_body)
    return app


def _http_error(exc: HTTPException):
    if request.path.startswith("/api/"):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(success=False, error=code, message=exc.description), exc.code
    return exc


def _read_refused_body(response):
    """A 413 from any route: the rest of the body is read (up to 64 MB) before the answer goes out, else a client
    still sending gets its connection reset instead of the JSON that says why."""
    if response.status_code == 413:
        body, left = request.environ.get("wsgi.input"), min(request.content_length or (64 << 20), 64 << 20)
        with contextlib.suppress(OSError, ValueError):
            while left > 0 and body is not None and (chunk := body.read(min(left, 1 << 16))):
                left -= len(chunk)
    return response


def _unexpected_error(exc: Exception):
    logging.getLogger(__name__).exception("unexpected error on %s", request.path)
    return jsonify(success=False, error="internal_error", message="unexpected server error"), 500


def _static_version() -> str:
    digest = hashlib.sha1()
    for path in sorted((ROOT / "static").rglob("*.js")):
        if "vendor" not in path.parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = create_app()
    host, _, port = application.config["BIND"].rpartition(":")
    application.run(host=host or "127.0.0.1", port=int(port), threaded=True)
