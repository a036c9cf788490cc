"""Where a job moves when another process moved it first: the store's compare-and-set, through its public methods.

On PostgreSQL another process's commit can land between a transaction's read of a row and its update. sqlite
lets no writer in between, so `Interleaved` plays that other process: just before the store's first update of a
job, it applies the other process's change within the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from notification_flow.db import Database, Row, Transaction
from notification_flow.jobs import JobStore, Notification
from notification_flow.lifecycle import NotificationOutcome, NotificationStatus, State

REF = "a" * 32
JOB_ID = "abcdefghij"
TRANSCRIPT = Notification(NotificationStatus.SUCCESS, transcript="/t/abcdefghij.json")
FAILURE = Notification(NotificationStatus.ERROR, error="Job rejected due to invalid audio")


class Interleaved:
    """A database where `other` (SQL and parameters) commits just before the next update of the jobs table."""

    def __init__(self, database: Database, *other: Any) -> None:
        self.database, self.other = database, other
        self.skip_locked = database.skip_locked

    @contextlib.contextmanager
    def transaction(self, write: bool = True, schema_lock: bool = False) -> Iterator[Any]:
        with self.database.transaction(write, schema_lock) as tx:
            yield _Step(tx, self)


class _Step:
    def __init__(self, tx: Transaction, plan: Interleaved) -> None:
        self.tx, self.plan = tx, plan

    @property
    def rowcount(self) -> int:
        return self.tx.rowcount

    def execute(self, sql: str, *params: Any) -> list[Row]:
        if self.plan.other and sql.lstrip().upper().startswith("UPDATE JOBS"):
            other, self.plan.other = self.plan.other, ()
            self.tx.execute(*other)
        return self.tx.execute(sql, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


def raced(store: JobStore) -> bool:
    """Whether the other process's change did land inside the store's transaction."""
    return store.database.other == ()  # type: ignore[attr-defined]


def running_job(store: JobStore) -> None:
    store.add_submission(REF, "a.wav")
    store.record_created(REF, JOB_ID)


def test_a_transcript_arriving_as_a_failure_is_recorded_still_wins(fresh_store: JobStore) -> None:
    running_job(fresh_store)
    before = fresh_store.now()
    racing = JobStore(Interleaved(fresh_store.database, "UPDATE jobs SET status = $1, error = $2 WHERE job_id = $3",
                                  State.REJECTED, "Job rejected due to invalid audio", JOB_ID))
    assert racing.record_notification(JOB_ID, TRANSCRIPT) is NotificationOutcome.DONE
    assert raced(racing)
    job = fresh_store.find(JOB_ID)
    assert (job.status, job.transcript) == (State.DONE, TRANSCRIPT.transcript)
    assert before <= job.updated_at <= fresh_store.now()


def test_a_failure_arriving_as_the_transcript_is_recorded_changes_nothing(fresh_store: JobStore) -> None:
    running_job(fresh_store)
    done_meanwhile = "UPDATE jobs SET status = $1, transcript = $2 WHERE job_id = $3"
    racing = JobStore(Interleaved(fresh_store.database, done_meanwhile, State.DONE, TRANSCRIPT.transcript, JOB_ID))
    assert racing.record_notification(JOB_ID, FAILURE) is NotificationOutcome.DUPLICATE
    assert raced(racing)
    job = fresh_store.find(JOB_ID)
    assert (job.status, job.transcript, job.error) == (State.DONE, TRANSCRIPT.transcript, None)


def test_a_job_id_learned_as_the_row_is_judged_not_created_adopts_the_job(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    racing = JobStore(Interleaved(fresh_store.database, "UPDATE jobs SET status = $1, error = $2 WHERE reference = $3",
                                  State.SUBMIT_FAILED, "no job with this reference", REF))
    job = racing.record_created(REF, JOB_ID)
    assert raced(racing)
    assert job is not None and (job.status, job.job_id) == (State.RUNNING, JOB_ID)
    assert fresh_store.find(JOB_ID).status is State.RUNNING


def test_a_failure_records_its_reason_and_a_transcript_its_path(fresh_store: JobStore) -> None:
    running_job(fresh_store)
    assert fresh_store.record_notification(JOB_ID, FAILURE) is NotificationOutcome.REJECTED
    assert fresh_store.find(JOB_ID).error == FAILURE.error
    assert fresh_store.record_notification(JOB_ID, TRANSCRIPT) is NotificationOutcome.DONE
    job = fresh_store.find(JOB_ID)
    assert (job.status, job.transcript) == (State.DONE, TRANSCRIPT.transcript)
