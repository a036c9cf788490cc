"""Job rows for the server to finish, created through notification_flow.db.

Every notification the load generator sends is for a job the database holds as `running`, as client.py
leaves it, so the server does its full work: find the job, write `<job_id>.json`, mark it done. The rows
are written in one transaction through the store's own backend (one commit per row, as client.py makes
them, would add minutes of setup to `make bench` and measure nothing).
"""

from __future__ import annotations

import itertools
import time
import uuid

from notification_flow.db import JobStore, open_store
from tests.postgres import POSTGRES_URL, fresh_schema, postgres_problem

__all__ = ["POSTGRES_URL", "fresh_schema", "postgres_problem"]  # the benchmarks' PostgreSQL, as the tests

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
