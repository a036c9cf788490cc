"""The job store: every job, changed only along the lifecycle.

A state changes in one place, `_move`, which asks `lifecycle.next_state` and then updates the row only if
its state is still the one it read (a compare-and-set), so no two processes can both move one job. A
notification changes only the row that holds its job id; a row learns its id only through `record_created`,
from client.py's answer, a listing, or the API's own answer for a notification's job (see auth.py).

Each method is one short transaction; times come from the database's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from notification_flow.db import Database, Row, StoreUnavailable, Transaction, migrate, open_database
from notification_flow.lifecycle import (
    OPEN_STATES,
    SETTLED_STATES,
    TERMINAL_STATES,
    Event,
    NotificationOutcome,
    NotificationStatus,
    State,
    next_state,
)
from notification_flow.redaction import redact_urls_in

__all__ = ["Job", "JobStore", "Notification", "StoreUnavailable", "open_store"]

# Work that must commit with a move or not at all (an event to hand on, say): called inside the move's
# transaction with the row as it now is.
Follower = Callable[[Transaction, Row], None]


@dataclass(frozen=True)
class Job:
    reference: str
    job_id: str | None
    audio: str
    status: State
    transcript: str | None
    error: str | None
    created_at: float
    updated_at: float
    remote_deleted_at: float | None = None  # when the job was deleted at Speechmatics on our behalf (retention.py)
    notice: str | None = None  # what Speechmatics recorded that the status does not say (notices.py)
    formats: str | None = None  # what the job has beside the json-v2, "srt,txt" (formats.py)

    @property
    def is_terminal(self) -> bool:
        """Nothing that arrives can change this job any more."""
        return self.status in TERMINAL_STATES

    @classmethod
    def from_row(cls, row: Row) -> Job:
        values = {name: row[name] for name in cls.__dataclass_fields__ if name in row}  # notice: a later column
        return cls(**{**values, "status": State(row["status"])})


@dataclass(frozen=True)
class Notification:
    """What one notification told us: its status, and the stored transcript's path if it brought one."""

    status: NotificationStatus
    transcript: str | None = None
    error: str | None = None
    notice: str | None = None  # what the transcript says its status does not: a failed add-on (notices.py)

    @property
    def event(self) -> Event | None:
        """The lifecycle event it carries; None for a success whose transcript we do not have yet."""
        if self.status is NotificationStatus.SUCCESS:
            return Event.TRANSCRIPT_STORED if self.transcript else None
        return Event.REJECTED

    @property
    def reason(self) -> str | None:
        """What a failure records as the job's error; None for a success."""
        if self.event is not Event.REJECTED:
            return None
        return self.error or f"Speechmatics reported {self.status}"


def open_store(database_url: str, migrate_schema: bool = True, followers: tuple[Follower, ...] = ()) -> JobStore:
    """The job store for DATABASE_URL. With `migrate_schema` it connects, creates or migrates the schema,
    and raises StoreConfigError now if that is impossible; without, nothing connects until first use."""
    database = open_database(database_url)
    if migrate_schema:
        migrate(database)
    return JobStore(database, followers)


class JobStore:
    def __init__(self, database: Database, followers: tuple[Follower, ...] = ()) -> None:
        self.database = database
        self.followers = followers  # each runs in the transaction of every move, after it

    # -- the lifecycle --------------------------------------------------------------------------------
    def add_submission(self, reference: str, audio: str, formats: str | None = None) -> None:
        """Record the intent to submit before anything is sent, so a crash can never lose a billed job (and the
        formats it will have beside the json-v2, formats.py)."""
        with self.database.transaction() as tx:
            now = tx.now()
            tx.execute("INSERT INTO jobs (reference, audio, status, created_at, updated_at) "
                       "VALUES ($1, $2, $3, $4, $4)", reference, audio, State.SUBMITTING, now)
            if formats:  # in the same transaction: the row never exists without them
                tx.execute("UPDATE jobs SET formats = $1 WHERE reference = $2", formats, reference)

    def record_created(self, reference: str, job_id: str) -> Job | None:
        """Give the row its Speechmatics job id, learned from client.py's answer, a listing, or the API's answer
        for a notification's job. None if there is no such row, or it already has another job id, or the id
        already belongs to another row, or the row can no longer take a job."""
        with self.database.transaction() as tx:
            tx.lock_job_id(job_id)  # two rows claiming one id: the second sees the first, never a duplicate key
            row = self._row(tx, "reference", reference)
            if row is None or row["job_id"] not in (None, job_id):
                return None
            if row["job_id"] is None:
                if self._row(tx, "job_id", job_id) is not None:  # that id already belongs to another row
                    return None
                if self._move(tx, row, Event.CREATED, job_id=job_id) is None:
                    return None
                row = self._row(tx, "reference", reference)
            return Job.from_row(row) if row else None

    def record_not_created(self, reference: str, reason: str) -> bool:
        """The submission certainly created no job; False if the row has moved on (it has a job after all)."""
        with self.database.transaction() as tx:
            row = self._row(tx, "reference", reference)
            return row is not None and self._move(tx, row, Event.NOT_CREATED, error=reason) is not None

    def record_notification(self, job_id: str, notification: Notification) -> NotificationOutcome:
        """Apply one notification to the row that holds `job_id` (the server has made sure one does)."""
        with self.database.transaction() as tx:
            row = self._row(tx, "job_id", job_id)
            if row is None:
                return NotificationOutcome.UNAUTHENTICATED  # no row of ours has this job
            event = notification.event
            if event is None:
                return NotificationOutcome.DUPLICATE if row["status"] in SETTLED_STATES else NotificationOutcome.WAITING
            moved = self._move(tx, row, event, transcript=notification.transcript, error=notification.reason,
                               notice=notification.notice)
            if moved is State.DONE:
                return NotificationOutcome.DONE
            return NotificationOutcome.REJECTED if moved is State.REJECTED else NotificationOutcome.DUPLICATE

    def record_remote_status(self, job_id: str, event: Event, transcript: str | None = None,
                             error: str | None = None, notice: str | None = None) -> bool:
        """Apply what the API says of a job (cronjob.py); False if the table allows no move (already final)."""
        with self.database.transaction() as tx:
            row = self._row(tx, "job_id", job_id)
            return row is not None and self._move(tx, row, event, transcript, error, notice) is not None

    def record_repair(self, job_id: str, transcript: str | None, error: str | None = None) -> None:
        """Point a done job at its fetched-again transcript, or record that it cannot be had any more.
        Not a move: the job stays done, since Speechmatics finished it. A transcript stored again is seen by
        the followers, as a move is."""
        with self.database.transaction() as tx:
            tx.execute("UPDATE jobs SET transcript = $1, error = $2, updated_at = $3 WHERE job_id = $4 AND "
                       "status = $5", transcript, error, tx.now(), job_id, State.DONE)
            row = self._row(tx, "job_id", job_id) if transcript and tx.rowcount == 1 else None
            for follow in self.followers if row else ():
                follow(tx, row)

    def record_purged(self, reference: str) -> Job | None:
        """Move a finished job to `purged`, keeping only what shows that it existed and when it was purged: its
        reference, job id and times; the audio name, transcript location and error text go. None if the
        table allows no such move (the job is not finished, or already purged)."""
        with self.database.transaction() as tx:
            row = self._row(tx, "reference", reference)
            if row is None or self._move(tx, row, Event.PURGED) is None:
                return None
            tx.execute("UPDATE jobs SET audio = '', transcript = NULL, checked_at = NULL WHERE reference = $1",
                       reference)
            row = self._row(tx, "reference", reference)
        return Job.from_row(row) if row else None

    def _move(self, tx: Transaction, row: Row, event: Event, transcript: str | None = None,
              error: str | None = None, notice: str | None = None, job_id: str | None = None) -> State | None:
        """The one place a job changes state: only along the table, and only from the state it was read in. If
        another process moved the row since it was read (PostgreSQL lets a commit land in between), the
        move is judged again from the row as it now is."""
        error = redact_urls_in(error)  # a fetch error quotes the audio URL, signature and all
        for _ in range(len(State)):  # each retry follows a move of the row: there cannot be more
            target = next_state(row["status"], event)
            if target is None:
                return None
            tx.execute("UPDATE jobs SET status = $1, job_id = COALESCE($2, job_id), transcript = COALESCE($3, "
                       "transcript), error = $4, updated_at = $5, lease_until = NULL, notice = COALESCE($8, notice) "
                       "WHERE reference = $6 AND status = $7", target, job_id, transcript, error, tx.now(),
                       row["reference"], row["status"], notice)
            if tx.rowcount == 1:
                moved = self._row(tx, "reference", row["reference"]) if self.followers else None
                for follow in self.followers:
                    follow(tx, moved or {})
                return target
            row = self._row(tx, "reference", row["reference"]) or {}
            if not row:
                return None
        return None

    # -- leases: who works on a job -------------------------------------------------------------------
    def heartbeat(self, reference: str) -> bool:
        """Show that the client submitting this job is alive, so cronjob.py leaves the row alone. False
        if the row is no longer `submitting`: the client must then give up rather than create a job."""
        with self.database.transaction() as tx:
            tx.execute("UPDATE jobs SET updated_at = $1 WHERE reference = $2 AND status = $3",
                       tx.now(), reference, State.SUBMITTING)
            return tx.rowcount == 1

    def claim_open_jobs(self, quiet_for: float, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` unfinished jobs quiet for `quiet_for` seconds, oldest first, skipping jobs
        another cronjob pass holds; a pass that dies simply lets its leases run out.

        `+created_at` keeps sqlite from walking the whole creation index to avoid a sort: open jobs are few
        beside the finished ones, so reading them by status and sorting them is the cheap way round."""
        sql = ("UPDATE jobs SET lease_until = $1 WHERE reference IN ("  # noqa: S608 (skip_locked is a constant)
               " SELECT reference FROM jobs WHERE status IN ($2, $3) AND updated_at <= $4"
               " AND (lease_until IS NULL OR lease_until < $5) ORDER BY +created_at LIMIT $6"
               f" {self.database.skip_locked}) RETURNING *")
        with self.database.transaction() as tx:
            now = tx.now()
            rows = tx.execute(sql, now + lease_seconds, *OPEN_STATES, now - quiet_for, now, limit)
        return sorted((Job.from_row(row) for row in rows), key=lambda job: job.created_at)

    def recently_not_created(self, within: float) -> list[Job]:
        """`submit_failed` rows judged within `within` seconds: a listing may yet show that they did create a job."""
        with self.database.transaction(write=False) as tx:
            rows = tx.execute("SELECT * FROM jobs WHERE status = $1 AND updated_at > $2 ORDER BY created_at",
                              State.SUBMIT_FAILED, tx.now() - within)
        return [Job.from_row(row) for row in rows]

    def lease(self, reference: str, lease_seconds: float) -> bool:
        """Take one job's lease (for repairs); False if another pass holds it."""
        with self.database.transaction() as tx:
            now = tx.now()
            tx.execute("UPDATE jobs SET lease_until = $1 WHERE reference = $2 AND (lease_until IS NULL OR "
                       "lease_until < $3)", now + lease_seconds, reference, now)
            return tx.rowcount == 1

    def renew(self, references: list[str], lease_seconds: float) -> None:
        """Extend leases a pass still holds, so a long pass never meets its own jobs again."""
        with self.database.transaction() as tx:
            until = tx.now() + lease_seconds
            for reference in references:
                tx.execute("UPDATE jobs SET lease_until = $1 WHERE reference = $2", until, reference)

    def release(self, reference: str) -> None:
        with self.database.transaction() as tx:
            tx.execute("UPDATE jobs SET lease_until = NULL WHERE reference = $1", reference)

    # -- the repair sweep: done jobs by when their file was last checked (reconcile.py) ------------------
    def due_checks(self, before: float, limit: int) -> list[Job]:
        """Up to `limit` done jobs whose file was last checked before `before`, longest ago first: one range
        of the (status, checked_at) index, whatever the history (jobs never to be checked again hold NULL,
        which no range reaches)."""
        with self.database.transaction(write=False) as tx:
            rows = tx.execute("SELECT * FROM jobs WHERE status = $1 AND checked_at < $2 ORDER BY checked_at LIMIT $3",
                              State.DONE, before, limit)
        return [Job.from_row(row) for row in rows]

    def mark_checked(self, references: list[str], at: float | None) -> None:
        """Record when these jobs' files were checked (None: never check them again), in one statement."""
        if not references:
            return
        among = ", ".join(f"${number}" for number in range(2, 2 + len(references)))
        with self.database.transaction() as tx:
            tx.execute(f"UPDATE jobs SET checked_at = $1 WHERE reference IN ({among})",  # noqa: S608 (placeholders)
                       at, *references)

    # -- reading --------------------------------------------------------------------------------------
    def now(self) -> float:
        """The database's clock: the one every time the state rules compare comes from (/readyz asks it too)."""
        with self.database.transaction(write=False) as tx:
            return tx.now()

    def find(self, job_id: str) -> Job | None:
        return self._one("job_id", job_id)

    def find_by_reference(self, reference: str) -> Job | None:
        return self._one("reference", reference)

    def jobs(self, status: State | None = None, created_after: float = 0.0) -> list[Job]:
        sql, params = "SELECT * FROM jobs WHERE created_at > $1", [created_after]
        if status:
            sql, params = sql + " AND status = $2", [created_after, status]
        with self.database.transaction(write=False) as tx:
            return [Job.from_row(row) for row in tx.execute(sql + " ORDER BY created_at", *params)]

    def newest_jobs(self, status: State | None = None, since: float | None = None, limit: int | None = None,
                    batch: int = 500) -> Iterator[Job]:
        """Jobs newest first, optionally of one status and created at or after `since`, at most `limit`
        (None: all). Read in batches of `batch` rows, each its own short transaction, continuing after the
        last row by (created_at, reference): memory stays flat and no transaction is held while printing."""
        of_status = "status = $5 AND " if status else ""
        sql = (f"SELECT * FROM jobs WHERE {of_status}created_at >= $1 AND (created_at, reference) < ($2, $3) "  # noqa: S608
               "ORDER BY created_at DESC, reference DESC LIMIT $4")
        of_this_status = [status] if status else []
        after, left = (math.inf, ""), limit
        while left is None or left > 0:
            size = batch if left is None else min(batch, left)
            with self.database.transaction(write=False) as tx:
                rows = tx.execute(sql, -math.inf if since is None else since, *after, size, *of_this_status)
            yield from map(Job.from_row, rows)
            if len(rows) < size:
                return
            after = (rows[-1]["created_at"], rows[-1]["reference"])
            left = None if left is None else left - len(rows)

    def _one(self, column: str, value: str) -> Job | None:
        with self.database.transaction(write=False) as tx:
            row = self._row(tx, column, value)
        return Job.from_row(row) if row else None

    @staticmethod
    def _row(tx: Transaction, column: str, value: Any) -> Row | None:
        query = {"job_id": "SELECT * FROM jobs WHERE job_id = $1",
                 "reference": "SELECT * FROM jobs WHERE reference = $1"}[column]
        rows = tx.execute(query, value)
        return rows[0] if rows else None
