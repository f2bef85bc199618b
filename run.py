"""The app factory. `python run.py` starts the development server; production runs under gunicorn:
    gunicorn -c gunicorn.conf.py 'run:create_app()'
"""
from __future__ import annotations

import hashlib
import logging
import pathlib
import re
from dataclasses import dataclass

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

import config as config_module
from connect import api, pages, websocket
from connect.reader import SocketReader
from connect.rtc import RtcService
from connect.tokens import JoinTokens
from connect.writer import SocketWriter
from meeting.manager import MeetingManager, MeetingSettings
from pipeline.hosts import HostManager

ROOT = pathlib.Path(__file__).parent


@dataclass
class Services:
    """What the app's parts share, kept in app.extensions["avatar"] (no module globals)."""
    config: dict
    manager: MeetingManager
    tokens: JoinTokens
    writer: SocketWriter
    reader: SocketReader
    hosts: HostManager
    static_version: str
    rtc: RtcService | None = None

    def jitsi_script_url(self) -> str:
        return self.config["JITSI_SCRIPT_URL"] or f"https://{self.config['JITSI_DOMAIN']}/external_api.js"

    def jitsi(self, room_id: str) -> dict | None:
        domain = self.config["JITSI_DOMAIN"]
        if not domain:
            return None
        name = re.sub(r"[^A-Za-z0-9]", "", f"{self.config['JITSI_ROOM_PREFIX']}{room_id}")
        return {"domain": domain, "room_name": name, "script_url": self.jitsi_script_url()}


def create_app(config: dict | None = None) -> Flask:
    settings = config_module.load(config, config_module.TestConfig if (config or {}).get("TESTING") else
                                  config_module.Config)
    app = Flask(__name__, static_folder=str(ROOT / "static"), template_folder=str(ROOT / "templates"))
    app.config.update(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_JSON_BYTES"]
    app.extensions["avatar"] = Services(
        config=settings,
        manager=MeetingManager(MeetingSettings(
            server_max_participants=settings["MAX_PARTICIPANTS"],
            default_max_participants=min(settings["DEFAULT_MAX_PARTICIPANTS"], settings["MAX_PARTICIPANTS"]),
            tiers=settings["QUALITY_TIERS"], tier_hysteresis=settings["TIER_HYSTERESIS"],
            reservation_ttl=settings["JOIN_TOKEN_TTL"], empty_room_ttl=settings["EMPTY_ROOM_TTL"],
            outbox_limit=settings["OUTBOX_LIMIT"], rate_burst=settings["RATE_BURST"],
            chat_rate=settings["CHAT_RATE"], chat_burst=settings["CHAT_BURST"])),
        tokens=JoinTokens(settings["SECRET_KEY"], settings["JOIN_TOKEN_TTL"]),
        writer=SocketWriter(settings["WS_PING_INTERVAL"]),
        reader=SocketReader(),
        hosts=HostManager(settings),
        static_version=_static_version())
    services = app.extensions["avatar"]
    services.rtc = RtcService(settings, services) if settings["RTC_ENABLED"] else None
    services.manager.on_close.append(services.hosts.close)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.minutes_bp)
    app.register_blueprint(api.stats_bp)
    websocket.init_app(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(exc: HTTPException):
    if request.path.startswith("/api/"):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(success=False, error=code, message=exc.description), exc.code
    return exc


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
