"""Job rows for the server to finish, created through notification_flow.db, and throwaway PostgreSQL schemas.

Every notification the load generator sends is for a job the database holds as `running`, as client.py
leaves it, so the server does its full work: find the job, write `<job_id>.json`, mark it done. The rows
are written in one transaction through the store's own backend (one commit per row, as client.py makes
them, would add minutes of setup to `make bench` and measure nothing).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

from notification_flow.db import JobStore, open_store

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")  # as the tests
_serial = itertools.count()


def new_ids(count: int) -> list[str]:
    """`count` distinct job ids matching [a-z0-9]{8,32}, never repeated within this process."""
    run = uuid.uuid4().hex[:4]
    return [f"b{run}{next(_serial):07d}" for _ in range(count)]


def create_running(database_url: str, job_ids: list[str], references: list[str] | None = None) -> JobStore:
    """Rows exactly as client.py leaves them after a submission: reference, audio, job id, `running`."""
    store = open_store(database_url)
    now = time.time()
    references = references or [uuid.uuid4().hex for _ in job_ids]
    with store.backend.transaction() as tx:
        for job_id, reference in zip(job_ids, references, strict=True):
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, created_at, updated_at) "
                       "VALUES (?, ?, ?, 'running', ?, ?)", (reference, job_id, f"{job_id}.wav", now, now))
    return store


def count_done(store: JobStore) -> int:
    return len(store.jobs(status="done"))


@contextlib.contextmanager
def postgres_schema(base_url: str = POSTGRES_URL) -> Iterator[str]:
    """A DATABASE_URL on a fresh schema of `base_url`, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_available(base_url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used, or None if it can."""
    try:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=3):
            return None
    except Exception as error:
        return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
