"""The limit: the least a durable notification receiver can do, as a WSGI app without a framework.

    WEBHOOK_SECRET=… TRANSCRIPTS_DIR=… LEAN_DATABASE=lean.db gunicorn bench.lean_app:app

It checks the job's bearer token, validates the id, parses the body as JSON, writes `<job_id>.json` through a
temporary file with fsync and rename, and commits one sqlite row (WAL, synchronous=FULL, BEGIN IMMEDIATE,
as notification_flow.jobs does). It does nothing else: no streaming (the body sits in memory), no
duplicate check, no log line, no directory fsync. Any receiver that keeps
what it acknowledges pays at least this, so our server's throughput is quoted as a fraction of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

SECRET = os.environ["WEBHOOK_SECRET"].encode()
DIRECTORY = Path(os.environ["TRANSCRIPTS_DIR"])
DATABASE = os.environ["LEAN_DATABASE"]
JOB_ID = re.compile(r"[a-z0-9]{8,32}")
_local = threading.local()
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def connection() -> sqlite3.Connection:
    """One connection per thread, configured like notification_flow.jobs's."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(DATABASE, timeout=5, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, status TEXT, transcript TEXT, "
                     "updated_at REAL)")
    return conn


def write_durably(job_id: str, body: bytes) -> Path:
    final = DIRECTORY / f"{job_id}.json"
    handle, temporary = tempfile.mkstemp(dir=DIRECTORY, suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    return final


def commit(job_id: str, path: Path) -> None:
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, 'done', ?, ?)", (job_id, str(path), time.time()))
    conn.execute("COMMIT")


def signed(authorization: str) -> bool:
    """A per-job token's signature is good (`Bearer v1.<reference>.<base64url HMAC-SHA256>`): the same
    cryptography as the server's check, without its look-up of the row the token names."""
    version, _, rest = authorization.removeprefix("Bearer ").partition(".")
    reference, _, signature = rest.partition(".")
    digest = hmac.new(SECRET, f"{version}.{reference}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), signature)


def answer(start_response: StartResponse, status: str) -> Iterable[bytes]:
    body = status.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/healthz":
        return answer(start_response, "200 OK")
    if not signed(environ.get("HTTP_AUTHORIZATION", "")):
        return answer(start_response, "401 Unauthorized")
    job_id = parse_qs(environ.get("QUERY_STRING", "")).get("id", [""])[0]
    if not JOB_ID.fullmatch(job_id):
        return answer(start_response, "400 Bad Request")
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    try:
        json.loads(body)
    except ValueError:
        return answer(start_response, "400 Bad Request")
    commit(job_id, write_durably(job_id, body))
    return answer(start_response, "200 OK")
