"""A private redis-server (Debian's package) on a free loopback port, for tests and `--redis auto`: its data in a
temporary directory with the append-only file on, so that a restart keeps the rooms as a deployment's would."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from bench.server import free_port


class RedisServer:
    def __init__(self, port: int | None = None, *extra: str):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run ./scripts/setup.sh (Debian's redis-server)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="avatar-redis-")
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SHUTDOWN (the append-only file is written), as a restart of the service does."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                redis.Redis(port=self.port).shutdown(nosave=False)
            except redis.ConnectionError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
