"""The servers under test, each in a process group of its own, the job rows they finish, and the interleaved
rounds they run in.

Our server runs as a user runs it, `python server.py`, with its defaults: gunicorn, one gthread worker per
core, four threads each. The lean handler runs under a gunicorn command line with the same worker class,
worker count, threads, timeout and keep-alive, so the comparison isolates the handler.

Every notification the load generator sends is for a job the database holds as `running`, as client.py
leaves it, so the server does its full work. On PostgreSQL (TEST_DATABASE_URL, like the tests) every run
gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import ROOT, RUNTIME_PYTHON
from bench.loadgen import reference_for
from notification_flow.jobs import JobStore, open_store

SECRET = secrets.token_hex(20)  # a fresh one per `make bench`, passed to each server and the load generator
THREADS, KEEPALIVE = 4, 5  # server.py's default --threads; notification_flow/wsgi.py's keep-alive
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        """The gunicorn master (the process we started) and its workers."""
        assert self.process is not None
        master = self.process.pid
        return [master, *map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split())]


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


def ours(workdir: Path, database_url: str, max_notification_mb: int = 512, **settings: str) -> Server:
    port = free_port()
    env = clean_env(workdir, WEBHOOK_SECRET=SECRET, DATABASE_URL=database_url, **settings,
                    TRANSCRIPTS_DIR=str(workdir / "transcripts"), MAX_NOTIFICATION_MB=str(max_notification_mb))
    return Server("ours", [RUNTIME_PYTHON, str(ROOT / "server.py"), "--port", str(port)], env, workdir, port)


def lean(workdir: Path) -> Server:
    port, transcripts = free_port(), workdir / "transcripts"
    transcripts.mkdir(parents=True, exist_ok=True)
    env = clean_env(workdir, WEBHOOK_SECRET=SECRET, TRANSCRIPTS_DIR=str(transcripts),
                    LEAN_DATABASE=str(workdir / "lean.db"))
    command = [RUNTIME_PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(os.cpu_count() or 1),
               "--worker-class", "gthread", "--threads", str(THREADS), "--timeout", "120",
               "--keep-alive", str(KEEPALIVE), "bench.lean_app:app"]
    return Server("lean", command, env, workdir, port)


@contextlib.contextmanager
def running(server: Server, timeout: float = 30) -> Iterator[Server]:
    """The server started and answering /healthz; its whole process group stopped afterwards, whatever happens."""
    with (server.workdir / f"{server.name}.log").open("ab") as log:
        server.process = subprocess.Popen(server.command, env=server.env, cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not healthy(server):
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not start; see {server.workdir / server.name}.log")
            time.sleep(0.1)
        time.sleep(0.5)  # let every worker finish booting, not just the first to answer
        yield server
    finally:
        stop(server.process)


def healthy(server: Server) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=1).status_code == 200
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return


def _postgres(statement: str, timeout: int = 10) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=timeout) as conn:
        conn.execute(statement)


def postgres_problem() -> str | None:
    """Why the PostgreSQL runs are skipped, or None when the server at POSTGRES_URL answers."""
    try:
        _postgres("SELECT 1", timeout=3)
    except Exception as error:
        return f"no PostgreSQL at {POSTGRES_URL}: {' '.join(str(error).split())}"
    return None


@contextlib.contextmanager
def fresh_schema(prefix: str = "bench") -> Iterator[str]:
    """A DATABASE_URL whose tables go into a new schema (via search_path), dropped when the run is over."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _postgres(f'CREATE SCHEMA "{schema}"')
    joiner = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{joiner}options=-csearch_path%3D{schema}"
    finally:
        _postgres(f'DROP SCHEMA "{schema}" CASCADE')


def new_ids(count: int) -> list[str]:
    """`count` job ids matching [a-z0-9]{8,32}, random, so never repeated."""
    return [f"b{uuid.uuid4().hex[:16]}" for _ in range(count)]


def create_running(database_url: str, job_ids: list[str], references: list[str] | None = None) -> JobStore:
    """Rows exactly as client.py leaves them after a submission: reference, audio, job id, `running`."""
    store = open_store(database_url)
    now = time.time()
    references = references or [reference_for(job_id) for job_id in job_ids]
    with store.database.transaction() as tx:
        for job_id, reference in zip(job_ids, references, strict=True):
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, created_at, updated_at) "
                       "VALUES ($1, $2, $3, 'running', $4, $4)", reference, job_id, f"{job_id}.wav", now)
    return store


def rounds(label: str, count: int, targets: dict[str, Callable[[Path], dict[str, Any]]], scratch: Path,
           log: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    """Each round runs every target once, in an order rotated from round to round, so a machine growing busier
    or quieter shifts all alike. Each run gets a fresh directory, kept until all rounds are done: on ext4,
    creating files right after thousands were deleted is slower for minutes, and would slow the next run."""
    names, runs = list(targets), {name: [] for name in targets}
    kept = Path(tempfile.mkdtemp(prefix=f"{label.replace(' ', '-')}-", dir=scratch))
    try:
        for number in range(count):
            for name in names[number % len(names):] + names[:number % len(names)]:
                runs[name].append(result := targets[name](Path(tempfile.mkdtemp(prefix=f"{name}-", dir=kept))))
                figures = ", ".join(f"{key} {value:.4g}" for key, value in result.items()
                                    if isinstance(value, int | float))
                log(f"{label} round {number + 1}/{count} {name}: {figures}")
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return runs
