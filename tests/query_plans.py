"""The structural proof that routine work does not grow with history: every statement a routine operation runs
is recorded as it runs, then explained, and none may read a whole table.

Shared by tests/unit (sqlite, `EXPLAIN QUERY PLAN`) and tests/integration (PostgreSQL, `EXPLAIN` with
sequential scans priced out, so the planner shows whether an index *can* serve the query).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from notification_flow import db
from notification_flow.jobs import JobStore, Notification, SweepCursor
from notification_flow.lifecycle import Event, NotificationStatus, State

TABLES = ("jobs", "early_notifications", "repair_queue", "reconciler_state")
SQLITE_FULL_SCAN = re.compile(rf"\bSCAN ({'|'.join(TABLES)})\b(?! USING)")
POSTGRES_FULL_SCAN = re.compile(rf"Seq Scan on ({'|'.join(TABLES)})\b")
Statement = tuple[str, tuple[Any, ...]]


@contextlib.contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every statement run through either backend's transactions while inside, with its parameters."""
    seen: list[Statement] = []
    originals = {cls: cls.execute for cls in (db._SqliteTransaction, db._PostgresTransaction)}

    def wrap(original: Any) -> Any:
        def execute(self: Any, sql: str, *params: Any) -> list[db.Row]:
            seen.append((sql, params))
            return original(self, sql, *params)
        return execute

    for cls, original in originals.items():
        cls.execute = wrap(original)  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        for cls, original in originals.items():
            cls.execute = original  # type: ignore[method-assign]


def seed(store: JobStore, count: int) -> None:
    """`count` done jobs and a few of every other kind, in one transaction."""
    with store.database.transaction() as tx:
        now = tx.now()
        for number in range(count):
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, transcript, created_at, updated_at) "
                       "VALUES ($1, $2, 'a.wav', $3, 'x.json', $4, $4)", f"seed{number:028d}", f"seed{number:08d}",
                       State.DONE if number % 10 else State.RUNNING, now - 86400 * 10 * number / count)
            if number % 50 == 0:
                tx.execute("INSERT INTO early_notifications (job_id, status, received_at) VALUES ($1, $2, $3)",
                           f"early{number:08d}", NotificationStatus.SUCCESS, now - number)


def exercise(store: JobStore) -> None:
    """Every routine operation once: a submission, a notification, a cronjob pass's queries, `--list`."""
    reference, job_id = "p" * 32, "planjob001"
    store.add_submission(reference, "a.wav")
    store.heartbeat(reference)
    store.record_created(reference, job_id)
    store.record_notification(job_id, Notification(NotificationStatus.SUCCESS, transcript="planjob001.json"))
    store.record_notification("planjob002", Notification(NotificationStatus.ERROR))  # kept early
    store.record_not_created("q" * 32, "none")
    store.claim_open_jobs(quiet_for=0, limit=10, lease_seconds=60)
    store.recently_not_created(1800)
    store.record_remote_status(job_id, Event.REJECTED)
    store.lease(reference, 60)
    store.release(reference)
    now = store.now()
    cursor = store.sweep_cursor()
    store.done_jobs_after(now - 7 * 86400, "", now, 100)
    store.save_sweep_cursor(SweepCursor(now, now - 86400, "s" * 32))
    assert cursor is None or store.sweep_cursor() is not None
    store.queue_repairs([reference])
    store.due_repairs(10)
    store.postpone_repair(reference)
    store.record_repair(job_id, "planjob001.json")
    store.forget_repair(reference)
    store.forget_early_notifications(7 * 86400)
    store.find(job_id)
    store.find_by_reference(reference)
    for status in (None, State.DONE):
        for since in (None, now - 3 * 86400):
            list(store.newest_jobs(status, since, limit=5, batch=2))  # the second batch continues after the first


def statements(store: JobStore) -> list[Statement]:
    """The statements `exercise` runs that read or change a table (the clock and locks aside)."""
    with recording() as seen:
        exercise(store)
    return [(sql, params) for sql, params in seen
            if re.search(r"\b(FROM|UPDATE|INTO)\s+(" + "|".join(TABLES) + r")\b", sql)]


def full_scans(store: JobStore) -> list[str]:
    """Each statement whose plan reads a whole table, with that plan: the list a test wants empty."""
    found = []
    postgres = isinstance(store.database, db.PostgresDatabase)
    checked = statements(store)
    assert len(checked) >= 20, checked  # the recording works: a test that checked nothing would pass
    for sql, params in checked:
        with store.database.transaction() as tx:
            if postgres:
                tx.execute("SET LOCAL enable_seqscan = off")
                plan = "\n".join(row["QUERY PLAN"] for row in tx.execute("EXPLAIN " + sql, *params))
                bad = POSTGRES_FULL_SCAN.search(plan)
            else:
                plan = "\n".join(row["detail"] for row in tx.execute("EXPLAIN QUERY PLAN " + sql, *params))
                bad = SQLITE_FULL_SCAN.search(plan)
        if bad:
            found.append(f"{sql}\n{plan}")
    return found
