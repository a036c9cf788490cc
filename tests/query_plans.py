"""The structural proof that routine work does not grow with history: every statement a routine operation runs
is recorded as it runs, then explained, and none may read a whole table.

Shared by tests/unit (sqlite, `EXPLAIN QUERY PLAN`) and tests/integration (PostgreSQL, `EXPLAIN` with
sequential scans priced out, so the planner shows whether an index *can* serve the query).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from notification_flow import db, retention
from notification_flow.jobs import JobStore, Notification
from notification_flow.lifecycle import Event, NotificationStatus, State
from notification_flow.retention import Deleter
from notification_flow.transcripts import TranscriptFiles

TABLES = ("jobs", "reconciler_pass")
# The tables that grow with history; the other holds one row.
HISTORY = ("jobs",)
# sqlite: SEARCH reads a range of an index; SCAN reads a table, or a whole index, from one end.
SQLITE_SCAN = re.compile(rf"\bSCAN ({'|'.join(HISTORY)})\b")
# PostgreSQL: a sequential scan, or an index scan with no `Index Cond` (the whole index, in its order).
POSTGRES_NODE = re.compile(rf"(Seq Scan|Index (?:Only )?Scan(?: Backward)? using \w+) on ({'|'.join(HISTORY)})\b")
Statement = tuple[str, tuple[Any, ...]]


@contextlib.contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every statement run through either backend's transactions while inside, with its parameters."""
    seen: list[Statement] = []
    originals = {db.Transaction: db.Transaction.execute}

    def wrap(original: Any) -> Any:
        def run(self: Any, sql: str, *params: Any) -> Any:
            seen.append((sql, params))
            return original(self, sql, *params)
        return run

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


def exercise(store: JobStore) -> None:
    """Every routine operation once: a submission, a notification, a cronjob pass's queries, `--list`."""
    reference, job_id = "p" * 32, "planjob001"
    store.add_submission(reference, "a.wav")
    store.heartbeat(reference)
    store.record_created(reference, job_id)
    store.record_notification(job_id, Notification(NotificationStatus.SUCCESS, transcript="planjob001.json"))
    store.record_notification("planjob002", Notification(NotificationStatus.ERROR))  # no row has it
    store.record_not_created("q" * 32, "none")
    store.claim_open_jobs(quiet_for=0, limit=10, lease_seconds=60)
    store.recently_not_created(1800)
    store.record_remote_status(job_id, Event.REJECTED)
    store.lease(reference, 60)
    store.release(reference)
    now = store.now()
    store.due_checks(now - 86400, 100)
    store.due_checks(now, 100)
    store.mark_checked([reference, job_id], now)
    store.record_repair(job_id, "planjob001.json")
    store.find(job_id)
    store.find_by_reference(reference)
    for status in (None, State.DONE):
        for since in (None, now - 3 * 86400):
            list(store.newest_jobs(status, since, limit=5, batch=2))  # the second batch continues after the first
    # retention.py: the server's deletion once answered, cronjob.py's purge, the gauges
    Deleter(store, None).delete_now(job_id)  # type: ignore[arg-type]  (no wish waits: the API is not called)
    with tempfile.TemporaryDirectory() as directory:
        retention.purge_old(store, TranscriptFiles(Path(directory)), days=5, limit=3)
    retention.record_deleted(store, reference)
    with store.database.transaction(write=False) as tx:
        retention.facts(tx, now)


def statements(store: JobStore) -> list[Statement]:
    """The statements `exercise` runs that read or change a table (the clock and locks aside)."""
    with recording() as seen:
        exercise(store)
    return [(sql, params) for sql, params in seen
            if re.search(r"\b(FROM|UPDATE|INTO)\s+(" + "|".join(TABLES) + r")\b", sql)]


def full_scans(store: JobStore) -> list[str]:
    """Each statement whose plan reads a whole table or index, with that plan: the list a test wants empty.

    Plans are asked for twice: as the planner sees a new database, then after ANALYZE, since statistics can
    change its mind (sqlite walked the whole creation index of a million jobs to avoid sorting a few open
    ones, only once it had them). The one read from an end allowed is an ordered read with a LIMIT and no
    condition, which stops after LIMIT rows: `--list` on the whole history."""
    checked = statements(store)
    assert len(checked) >= 20, checked  # the recording works: a test that checked nothing would pass
    found = [bad for sql, params in checked if (bad := _full_scan(store, sql, params))]
    with store.database.transaction() as tx:
        tx.execute("ANALYZE")
    return found + [bad for sql, params in checked if (bad := _full_scan(store, sql, params)) and bad not in found]


def _full_scan(store: JobStore, sql: str, params: tuple[Any, ...]) -> str | None:
    if " LIMIT " in sql and " WHERE " not in sql:
        return None  # an ordered read of the first LIMIT rows, whatever the table holds
    with store.database.transaction() as tx:
        if isinstance(store.database, db.PostgresDatabase):
            tx.execute("SET LOCAL enable_seqscan = off")
            lines = [row["QUERY PLAN"] for row in tx.execute("EXPLAIN " + sql, *params)]
            bad = _postgres_whole_read(lines)
        else:
            lines = [row["detail"] for row in tx.execute("EXPLAIN QUERY PLAN " + sql, *params)]
            bad = any(SQLITE_SCAN.search(line) for line in lines)
    return f"{sql}\n" + "\n".join(lines) if bad else None


def _postgres_whole_read(lines: list[str]) -> bool:
    """A node that reads one of our tables without an index condition (its detail lines follow it, until the
    next node, which starts with `->`).

    One exception, PostgreSQL's only: an index read in order straight under a Limit, which stops after LIMIT
    matches. PostgreSQL keeps the frequency of each status, so it chooses that plan only for a common one
    (`--list --status done`) and reads a range of (status, created_at) for a rare one. sqlite keeps no such
    figures, and the same plan there walked a million finished jobs looking for a few open ones."""
    for number, line in enumerate(lines):
        node = POSTGRES_NODE.search(line)
        if not node:
            continue
        if node.group(1) == "Seq Scan":
            return True
        if number and lines[number - 1].lstrip(" ->").startswith("Limit"):
            continue
        details = []
        for following in lines[number + 1:]:
            if following.strip().startswith("->"):
                break
            details.append(following)
        if not any("Index Cond:" in detail for detail in details):
            return True
    return False
