"""Fixtures: the app and its test client, and live servers under gunicorn on free ports."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from config import TESTING
from run import create_app
from tests import minting

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Tests that start servers, load models or run Chromium are "slow": `pytest -m "not slow"` leaves them out.
SLOW_FIXTURES = {"live_server", "live_server_factory", "host_server", "server", "local_llm", "piper", "lipsync",
                 "hello", "tiny_en", "base_cache", "vad_session", "fake_wav2lip"}
SLOW_MODULES = {"test_browser", "test_browser_host", "test_live", "test_host", "test_minutes_live",
                "test_avatars"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__.split(".")[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real server process: gunicorn with the project's gunicorn.conf.py, as in production."""

    def __init__(self, overrides: dict, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        env = dict(os.environ, AVATAR_BIND=f"127.0.0.1:{self.port}", AVATAR_SECRET_KEY=minting.SECRET,
                   AVATAR_RECORDINGS_DIR=TESTING["RECORDINGS_DIR"], AVATAR_PHOTO_AVATARS_DIR=TESTING["PHOTO_AVATARS_DIR"],
                   AVATAR_GUNICORN_THREADS="200", AVATAR_LOG_LEVEL="warning",
                   AVATAR_JOIN_TIMEOUT="2", AVATAR_HOST_ENABLED="0")   # tests of the AI host turn it on
        env.update({f"AVATAR_{k}": str(v) for k, v in overrides.items()})
        self.log = open(pathlib.Path(tempfile.gettempdir()) / f"avatar-test-server-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "run:create_app()"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {pathlib.Path(self.log.name).read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def log_text(self) -> str:
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        pathlib.Path(self.log.name).unlink(missing_ok=True)

    def __str__(self) -> str:
        return self.url


@pytest.fixture(scope="session")
def live_server_factory():
    """live_server_factory(overrides) -> a LiveServer; one process per distinct set of overrides."""
    servers: dict[tuple, LiveServer] = {}

    def make(overrides: dict | None = None) -> LiveServer:
        key = tuple(sorted((k, str(v)) for k, v in (overrides or {}).items()))    # 1 and "1" are one server
        if key not in servers:
            servers[key] = LiveServer(dict(key))
        return servers[key]

    yield make
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def live_server(live_server_factory) -> LiveServer:
    return live_server_factory()
