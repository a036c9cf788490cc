"""Support for the process-level tests, the soak and nothing else: real scripts as real processes against the
emulator, waiting without sleeping blindly, a PostgreSQL schema nobody else sees, creating jobs the way
client.py does, and a proxy that swallows the API's answers.

PostgreSQL comes from TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test): each user gets a
fresh schema, selected through `options=-csearch_path`, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from notification_flow.auth import auth_header, job_token
from notification_flow.jobs import JobStore, open_store
from tests import RUNTIME_PYTHON

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret-0123456789"
API_KEY = "test-api-key"
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def json_lines(text: str) -> list[dict[str, Any]]:
    """`client.py --list --json` prints one JSON object per line, newest job first."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_env(home: Path, **values: Any) -> dict[str, str]:
    """The environment a user would set, and nothing of the developer's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPEECHMATICS_", "WEBHOOK_", "DATABASE_URL", "TRANSCRIPTS_", "AWS_"))}
    env["HOME"] = str(home)  # no ~/.speechmatics/config of the developer's
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env


@dataclass
class Stack:
    """One user's installation: settings, a database, a transcripts directory (or, with `storage` set, the
    TRANSCRIPTS_URL and AWS_* variables of an object store), and the emulator."""

    tmp: Path
    emulator: Any
    database_url: str
    server_port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    storage: dict[str, str] = field(default_factory=dict)

    @property
    def transcripts(self) -> Path:
        return self.tmp / "transcripts"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/webhook"

    def env(self, **extra: Any) -> dict[str, str]:
        settings = {"SPEECHMATICS_API_KEY": API_KEY, "SPEECHMATICS_BATCH_URL": self.emulator.url,
                    "WEBHOOK_URL": self.webhook_url, "WEBHOOK_SECRET": SECRET, "DATABASE_URL": self.database_url,
                    "TRANSCRIPTS_DIR": self.transcripts, **self.storage}
        return script_env(self.tmp, **{**settings, **extra})

    def run(self, script: str, *args: str, timeout: float = 120, **env: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RUNTIME_PYTHON, str(ROOT / script), *args], env=self.env(**env), cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def client(self, *args: str, **env: Any) -> subprocess.CompletedProcess[str]:
        return self.run("client.py", *args, **env)

    def cronjob(self, *args: str, **env: Any) -> subprocess.CompletedProcess[str]:
        return self.run("cronjob.py", *args, **env)

    def start_server(self, workers: int = 2, **env: Any) -> subprocess.Popen[bytes]:
        log = (self.tmp / "server.log").open("ab")
        self.server = subprocess.Popen(
            [RUNTIME_PYTHON, str(ROOT / "server.py"), "--port", str(self.server_port), "--workers", str(workers)],
            env=self.env(**env), cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._healthy, timeout=30, message="server.py to answer /readyz")
        return self.server

    def _healthy(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise AssertionError(f"server.py exited: {self.server_log()}")
        with contextlib.suppress(requests.RequestException):
            # /readyz: the database answers and storage is writable, so a test starts on a working server
            return requests.get(f"http://127.0.0.1:{self.server_port}/readyz", timeout=1).status_code == 200
        return False

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, sig)
            self.server.wait(timeout=30)
        self.server = None

    def server_log(self) -> str:
        path = self.tmp / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def store(self) -> JobStore:
        return open_store(self.database_url)

    def jobs(self) -> dict[str, Any]:
        return {job.job_id or job.reference: job for job in self.store().jobs()}

    def notify(self, job_id: str, status: str = "success", body: bytes = b"", content_type: str | None = None,
               secret: str | None = SECRET, method: str = "POST", reference: str | None = None,
               **params: str) -> requests.Response:
        """Send a notification the way Speechmatics does, for tests of what the server refuses: with the token
        of `reference`'s row (by default the row that has `job_id`; a reference of no row if none has it)."""
        headers = {"User-Agent": "Speechmatics-API/2.0"}
        if secret is not None:
            job = None if reference or "\x00" in job_id else self.store().find(job_id)
            reference = reference or (job.reference if job else uuid.uuid4().hex)
            headers["Authorization"] = f"Bearer {job_token(secret, reference)}"
        if content_type:
            headers["Content-Type"] = content_type
        return requests.request(method, self.webhook_url, params={"id": job_id, "status": status, **params},
                                data=body, headers=headers, timeout=30)


def token_for(stack: Stack, job_id: str, secret: str = SECRET) -> dict[str, str]:
    """The Authorization header of the job's notification: its row's own token."""
    job = stack.store().find(job_id)
    assert job is not None, job_id
    return {"Authorization": f"Bearer {job_token(secret, job.reference)}"}


def transcript_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def database_held(database_url: str, *tables: str) -> Iterator[None]:
    """Hold the database's write lock (sqlite) or an exclusive lock on `tables` (PostgreSQL) for the block,
    from another connection, as a long transaction or a migration elsewhere would."""
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        if database_url.startswith("sqlite"):
            conn: Any = sqlite3.connect(database_url[len("sqlite:///"):], isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
        else:
            import psycopg

            conn = psycopg.connect(database_url)
            conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        locked.set()
        release.wait(60)
        conn.execute("ROLLBACK") if isinstance(conn, sqlite3.Connection) else conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        if not locked.wait(10):
            raise AssertionError("could not take the database's lock")
        yield
    finally:
        release.set()
        holder.join()


# -- PostgreSQL ----------------------------------------------------------------------------------------
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_problem(base_url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used here, or None if it can."""
    try:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=3):
            return None
    except Exception as error:
        return f"no PostgreSQL at {base_url}: {str(error).strip().splitlines()[-1]}"


@contextlib.contextmanager
def fresh_schema(base_url: str = POSTGRES_URL, prefix: str = "test") -> Iterator[str]:
    """Yield a DATABASE_URL whose tables live in a new schema; the schema is dropped whatever happens."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- jobs created the way client.py creates them -------------------------------------------------------
def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def create_job(stack: Stack, reference: str, notification: dict[str, Any] | None = None,
               audio: bytes | None = None, data_name: str = "example.wav") -> str:
    """POST /v2/jobs with our reference and a notification to our server (authenticated)."""
    config: dict[str, Any] = {"type": "transcription", "transcription_config": {"language": "en"},
                              "tracking": {"reference": reference}}
    if notification is not None:
        config["notification_config"] = [{"url": stack.webhook_url,
                                          "auth_headers": [auth_header(SECRET, reference)], **notification}]
    data = audio if audio is not None else (ROOT / "example.wav").read_bytes()
    response = requests.post(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=30,
                             data={"config": json.dumps(config)}, files={"data_file": (data_name, data)})
    response.raise_for_status()
    return response.json()["id"]


def submit_like_client(stack: Stack, notification: dict[str, Any] | None = None, record: bool = True) -> tuple[
        str, str]:
    """Record intent, create the job, and (unless the 'client' crashes) record its id. Returns (ref, id)."""
    store = stack.store()
    reference = uuid.uuid4().hex
    store.add_submission(reference, "example.wav")
    job_id = create_job(stack, reference, notification)
    if record:
        store.record_created(reference, job_id)
    return reference, job_id


def created_jobs(stack: Stack) -> list[dict[str, Any]]:
    """Every job the emulator has, as GET /v2/jobs lists it."""
    response = requests.get(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=10)
    response.raise_for_status()
    return response.json()["jobs"]


# -- a proxy that swallows answers ---------------------------------------------------------------------
@contextlib.contextmanager
def blackhole(target_url: str) -> Iterator[str]:
    """Yield a base URL that swallows every answer from `target_url`."""
    target = urlsplit(target_url)
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()
    connections: list[socket.socket] = []

    def pump(source: socket.socket, sink: socket.socket | None) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if sink is not None:
                    sink.sendall(chunk)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((target.hostname, target.port))
            connections.extend((client, upstream))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, None), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}{target.path}"
    finally:
        stopping.set()
        listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()
