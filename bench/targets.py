"""Starting and stopping the servers under test, each in its own process group.

Our server runs as a user runs it, `python server.py`, with its defaults: gunicorn, one gthread worker per
core, four threads each. The lean handler runs under a gunicorn command line with the same worker class,
worker count, threads, timeout and keep-alive, so the comparison isolates the handler.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.bodies import ROOT

SECRET = secrets.token_hex(20)  # a fresh one per `make bench`, passed to each server and the load generator
WORKERS = os.cpu_count() or 1
THREADS = 4  # server.py's default --threads
KEEPALIVE = 5  # notification_flow/wsgi.py's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, **values: str) -> dict[str, str]:
    """The environment a user would set, and none of the developer's own settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPEECHMATICS_", "WEBHOOK_", "DATABASE_URL", "TRANSCRIPTS_", "MAX_NOTIF", "AWS_"))}
    env.update(HOME=str(home), PYTHONWARNINGS="ignore::DeprecationWarning", **values)
    return env


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Server:
        log = (self.workdir / f"{self.name}.log").open("ab")
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    time.sleep(0.5)  # let every worker finish booting, not just the first to answer
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; see {self.workdir / self.name}.log")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def pids(self) -> list[int]:
        """The master and its workers: every process in the group we started."""
        if self.process is None:
            return []
        group = self.process.pid
        return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _pgid(pid) == group]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def gunicorn(app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", str(WORKERS),
            "--worker-class", "gthread", "--threads", str(THREADS), "--timeout", "120",
            "--keep-alive", str(KEEPALIVE), app]


def ours(workdir: Path, database_url: str, max_notification_mb: int = 512, name: str = "ours",
         **extra: str) -> Server:
    env = clean_env(workdir, WEBHOOK_SECRET=SECRET, DATABASE_URL=database_url, **extra,
                    TRANSCRIPTS_DIR=str(workdir / "transcripts"), MAX_NOTIFICATION_MB=str(max_notification_mb))
    return Server(name, [sys.executable, str(ROOT / "server.py"), "--port", "{port}"], env, workdir)


def lean(workdir: Path) -> Server:
    transcripts = workdir / "transcripts"
    transcripts.mkdir(parents=True, exist_ok=True)
    env = clean_env(workdir, WEBHOOK_SECRET=SECRET, TRANSCRIPTS_DIR=str(transcripts),
                    LEAN_DATABASE=str(workdir / "lean.db"))
    return Server("lean", gunicorn("bench.lean_app:app"), env, workdir)
