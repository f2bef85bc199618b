"""Start and stop one gunicorn server for a benchmark (or several sharing rooms through Redis), read their CPU
time, and call their HTTP API."""
from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_sample(pid: int) -> dict:
    """A process's CPU seconds (user, system; all threads), context switches and threads so far (/proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    switches = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    switches += int(line.split()[1])
        except (OSError, ValueError):
            pass                       # a thread that ended meanwhile
    return {"user": int(fields[11]) / CLK_TCK, "sys": int(fields[12]) / CLK_TCK, "switches": switches,
            "threads": int(fields[17])}


def add_samples(samples: list[dict]) -> dict:
    return {k: sum(s[k] for s in samples) for k in ("user", "sys", "switches", "threads")}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


class GunicornServer:
    """`gunicorn -c gunicorn.conf.py <app>` from the repository root, on a free 127.0.0.1 port."""

    def __init__(self, app: str, threads: int, env: dict | None = None):
        self.app, self.threads = app, threads
        self.port = free_port()
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = pathlib.Path(tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")[1])

    def start(self, timeout: float = 30.0) -> GunicornServer:
        env = dict(os.environ, AVATAR_BIND=f"127.0.0.1:{self.port}", AVATAR_GUNICORN_THREADS=str(self.threads),
                   AVATAR_SECRET_KEY="bench-secret-of-at-least-32-bytes-00", AVATAR_LOG_LEVEL="warning",
                   AVATAR_PRELOAD_MODELS="0") | self.extra_env
        gunicorn = str(pathlib.Path(sys.executable).parent / "gunicorn")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", self.app], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"gunicorn {self.app} exited with {self.proc.returncode}: {self.log_tail()}")
            if self.worker_pid() is not None and self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gunicorn did not start in {timeout} s: {self.log_tail()}")

    def _answers(self) -> bool:
        try:
            status, _ = self.request("GET", "/api/meeting/__bench_probe__")
            return status < 500
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        try:
            return [int(x) for x in
                    pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def worker_pid(self) -> int | None:
        pids = self.worker_pids()
        return pids[0] if pids else None

    def sample(self) -> dict:
        """The worker's CPU seconds (user, system; all threads) and context switches so far."""
        return process_sample(self.worker_pid())

    def sample_all(self) -> dict:
        """The same summed over gunicorn's master and all its worker processes."""
        return add_samples([process_sample(pid) for pid in (self.proc.pid, *self.worker_pids())])

    def server_for(self, participant: int) -> GunicornServer:
        """The server participant `participant` of a room joins and connects to (see ServerGroup)."""
        return self

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, {"raw": raw[:200].decode(errors="replace")}
        finally:
            conn.close()

    def metrics(self, timeout: float = 10.0) -> dict[str, float] | None:
        """The server's /metrics as {'name{labels}': value}, e.g. 'avatar_dropped_total{reason="pose_rate"}';
        None when it has none (the naive relay) or does not answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            raw = resp.read()
        except OSError:
            return None
        finally:
            conn.close()
        return parse_metrics(raw.decode(errors="replace")) if resp.status == 200 else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, dict]:
        """The shape the test clients (tests.wsclient, tests.meetings) call."""
        return self.request(method, path, body, timeout=timeout)

    def create_room(self, room_id: str, user_id: str, max_participants: int, host: bool = False) -> dict:
        """A room of `max_participants` people; `host`: with the AI host as an extra participant."""
        status, body = self.request("POST", "/api/meeting/create", {
            "user_id": user_id, "room_id": room_id, "max_participants": max_participants, "host": host})
        if status not in (200, 201):
            raise RuntimeError(f"create {room_id}: HTTP {status} {body}")
        return body

    def join(self, room_id: str, user_id: str) -> dict:
        status, body = self.request("POST", "/api/meeting/join", {"room_id": room_id, "user_id": user_id})
        if status != 200 or "token" not in body:
            raise RuntimeError(f"join {room_id}/{user_id}: HTTP {status} {body}")
        return body

    def stop(self, grace: float = 8.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._log.close()
            return
        worker = self.worker_pid()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if worker is not None:
            try:
                os.kill(worker, 0)
                os.kill(worker, signal.SIGKILL)
            except OSError:
                pass
        self._log.close()
        if self.log_path.stat().st_size == 0:
            self.log_path.unlink()             # nothing logged: keep only logs worth reading

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self, limit: int = 8) -> dict:
        """Error lines and tracebacks the server logged (its log level is warning)."""
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        bad = [line for line in text if any(w in line for w in ("ERROR", "Traceback", "CRITICAL", "Exception"))]
        return {"error_lines": len(bad), "warning_lines": sum("WARNING" in line for line in text),
                "first": bad[:limit], "log": str(self.log_path)}


class ServerGroup:
    """`n` GunicornServers sharing rooms through Redis (AVATAR_REDIS_URL, the same AVATAR_SECRET_KEY, a key prefix
    of their own): rooms are created through the first, participant j of a room joins and connects to server
    j % n. `sample()` sums the CPU of every server's processes and, given its pid, of redis-server."""

    def __init__(self, app: str, n: int, threads: int, redis_url: str, env: dict | None = None,
                 redis_pid: int | None = None):
        env = dict(env or {}, AVATAR_REDIS_URL=redis_url, AVATAR_REDIS_PREFIX=f"bench-{uuid.uuid4().hex[:12]}")
        self.servers = [GunicornServer(app, threads, env) for _ in range(n)]
        self.redis_pid = redis_pid

    def start(self, timeout: float = 30.0) -> ServerGroup:
        try:
            for server in self.servers:
                server.start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    @property
    def port(self) -> int:
        return self.servers[0].port

    def server_for(self, participant: int) -> GunicornServer:
        return self.servers[participant % len(self.servers)]

    def create_room(self, *args, **kwargs) -> dict:
        return self.servers[0].create_room(*args, **kwargs)

    def sample(self) -> dict:
        """CPU seconds, context switches and threads of every gunicorn process and of redis-server ("redis":
        its CPU seconds alone, also counted in user and sys)."""
        redis = [process_sample(self.redis_pid)] if self.redis_pid else []
        out = add_samples([server.sample_all() for server in self.servers] + redis)
        out["redis"] = redis[0]["user"] + redis[0]["sys"] if redis else None
        return out

    def worker_pids(self) -> list[int]:
        return [pid for server in self.servers for pid in server.worker_pids()]

    def metrics(self, timeout: float = 10.0) -> dict[str, float] | None:
        """Every server's /metrics summed (None if one has none)."""
        out: dict[str, float] = {}
        for server in self.servers:
            m = server.metrics(timeout)
            if m is None:
                return None
            for key, value in m.items():
                out[key] = out.get(key, 0.0) + value
        return out

    def log_problems(self, limit: int = 8) -> dict:
        logs = [server.log_problems(limit) for server in self.servers]
        return {"error_lines": sum(x["error_lines"] for x in logs), "warning_lines": sum(x["warning_lines"] for x in logs),
                "first": [line for x in logs for line in x["first"]][:limit], "log": [x["log"] for x in logs]}
