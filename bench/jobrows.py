"""Job rows for the server to finish, created through notification_flow.jobs in one transaction.

Every notification the load generator sends is for a job the database holds as `running`, as client.py
leaves it, so the server does its full work. On PostgreSQL (TEST_DATABASE_URL, like the tests) every run
gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Iterator

from notification_flow.jobs import JobStore, open_store

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_serial = itertools.count()


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
    """`count` distinct job ids matching [a-z0-9]{8,32}, never repeated within this process."""
    run = uuid.uuid4().hex[:4]
    return [f"b{run}{next(_serial):07d}" for _ in range(count)]


def reference_for(job_id: str) -> str:
    """Derived from the job id, so the load generator can sign with each job's own token unaided."""
    return f"bench{job_id}"


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
