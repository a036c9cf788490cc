"""The job store by concept: recording intent and ids, notifications and late ones, conflicting orders, leases."""

from __future__ import annotations

import itertools
import time

import pytest

from notification_flow.db import migrate
from notification_flow.jobs import JobStore, Notification
from notification_flow.lifecycle import Event, NotificationOutcome, NotificationStatus, State
from notification_flow.schema import MIGRATIONS

REF, OTHER_REF = "a" * 32, "b" * 32
JOB_ID, OTHER_ID = "abcdefghij", "klmnopqrst"
TRANSCRIPT = Notification(NotificationStatus.SUCCESS, transcript="/t/abcdefghij.json")
NO_TRANSCRIPT = Notification(NotificationStatus.SUCCESS)
FAILURE = Notification(NotificationStatus.ERROR, error="Job rejected due to invalid audio")


def test_intent_is_recorded_as_submitting(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "call.wav")
    job = fresh_store.find_by_reference(REF)
    assert (job.status, job.job_id, job.audio) == (State.SUBMITTING, None, "call.wav")
    assert job.created_at == job.updated_at


def test_recording_the_id_makes_the_job_running(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "call.wav")
    job = fresh_store.record_created(REF, JOB_ID)
    assert (job.status, job.job_id) == (State.RUNNING, JOB_ID)
    assert fresh_store.record_created(REF, JOB_ID).status == State.RUNNING  # twice is harmless


def test_a_row_is_never_given_a_second_job_id(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "call.wav")
    fresh_store.record_created(REF, JOB_ID)
    assert fresh_store.record_created(REF, OTHER_ID) is None
    assert fresh_store.find_by_reference(REF).job_id == JOB_ID


def test_a_job_id_is_never_given_to_a_second_row(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.add_submission(OTHER_REF, "b.wav")
    fresh_store.record_created(REF, JOB_ID)
    assert fresh_store.record_created(OTHER_REF, JOB_ID) is None
    assert fresh_store.find_by_reference(OTHER_REF).status == State.SUBMITTING


def test_unknown_reference_is_not_recorded(fresh_store: JobStore) -> None:
    assert fresh_store.record_created("nobody", JOB_ID) is None
    assert fresh_store.jobs() == []


def test_not_created_fails_a_submitting_row_but_not_an_attached_one(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.add_submission(OTHER_REF, "b.wav")
    fresh_store.record_created(OTHER_REF, JOB_ID)
    assert fresh_store.record_not_created(REF, "HTTP 400") is True
    assert fresh_store.record_not_created(OTHER_REF, "too late") is False
    assert fresh_store.find_by_reference(REF).error == "HTTP 400"
    assert fresh_store.find_by_reference(OTHER_REF).status == State.RUNNING


def test_a_job_judged_not_created_is_adopted_when_it_turns_up(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_not_created(REF, "no job with this reference")
    assert fresh_store.record_created(REF, JOB_ID).status == State.RUNNING
    assert fresh_store.record_notification(JOB_ID, TRANSCRIPT) == NotificationOutcome.DONE
    job = fresh_store.find_by_reference(REF)
    assert (job.status, job.job_id, job.error) == (State.DONE, JOB_ID, None)


def test_notification_outcomes_on_a_running_job(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_created(REF, JOB_ID)
    assert fresh_store.record_notification(JOB_ID, NO_TRANSCRIPT) == NotificationOutcome.WAITING
    assert fresh_store.record_notification(JOB_ID, TRANSCRIPT) == NotificationOutcome.DONE
    assert fresh_store.record_notification(JOB_ID, TRANSCRIPT) == NotificationOutcome.DUPLICATE
    assert fresh_store.record_notification(JOB_ID, FAILURE) == NotificationOutcome.DUPLICATE
    assert fresh_store.record_notification(JOB_ID, NO_TRANSCRIPT) == NotificationOutcome.DUPLICATE
    job = fresh_store.find(JOB_ID)
    assert (job.status, job.transcript, job.error) == (State.DONE, "/t/abcdefghij.json", None)


def test_a_failure_records_its_reason_or_a_default(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_created(REF, JOB_ID)
    fresh_store.record_notification(JOB_ID, Notification(NotificationStatus.TRIM_ERROR))
    assert fresh_store.find(JOB_ID).error == "Speechmatics reported trim_error"


def test_a_notification_for_a_job_id_no_row_holds_changes_nothing(fresh_store: JobStore) -> None:
    """Only `record_created` binds a row to a job id: a notification never does, whatever it says."""
    fresh_store.add_submission(REF, "a.wav")
    for note in (TRANSCRIPT, FAILURE, NO_TRANSCRIPT):
        assert fresh_store.record_notification(JOB_ID, note) == NotificationOutcome.UNAUTHENTICATED
    job = fresh_store.find_by_reference(REF)
    assert (job.status, job.job_id, job.transcript) == (State.SUBMITTING, None, None)


CONFLICTING = [TRANSCRIPT, FAILURE, NO_TRANSCRIPT]


def expected_end(notes: tuple[Notification, ...]) -> State:
    if TRANSCRIPT in notes:
        return State.DONE
    return State.REJECTED if FAILURE in notes else State.RUNNING


@pytest.mark.parametrize("order", [order for size in (2, 3) for order in itertools.permutations(CONFLICTING, size)])
def test_conflicting_notifications_end_the_same_in_every_order(fresh_store: JobStore,
                                                               order: tuple[Notification, ...]) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_created(REF, JOB_ID)
    for note in order:
        fresh_store.record_notification(JOB_ID, note)
    assert fresh_store.find_by_reference(REF).status == expected_end(order)


def test_heartbeat_touches_only_a_submitting_row(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    before = fresh_store.find_by_reference(REF).updated_at
    time.sleep(0.002)  # the clock has millisecond precision
    assert fresh_store.heartbeat(REF) is True
    assert fresh_store.find_by_reference(REF).updated_at > before
    fresh_store.record_created(REF, JOB_ID)
    assert fresh_store.heartbeat(REF) is False
    assert fresh_store.heartbeat("nobody") is False


def test_claims_take_quiet_open_jobs_oldest_first_and_skip_leased_ones(fresh_store: JobStore) -> None:
    for number in range(5):
        fresh_store.add_submission(f"{number:032d}", "a.wav")
    fresh_store.record_created(f"{4:032d}", JOB_ID)
    fresh_store.record_notification(JOB_ID, TRANSCRIPT)  # done: never claimed
    first = fresh_store.claim_open_jobs(quiet_for=0, limit=2, lease_seconds=60)
    second = fresh_store.claim_open_jobs(quiet_for=0, limit=10, lease_seconds=60)
    assert [job.reference for job in first] == [f"{0:032d}", f"{1:032d}"]
    assert [job.reference for job in second] == [f"{2:032d}", f"{3:032d}"]
    assert fresh_store.claim_open_jobs(quiet_for=0, limit=10, lease_seconds=60) == []
    fresh_store.release(f"{0:032d}")
    assert [job.reference for job in fresh_store.claim_open_jobs(0, 10, 60)] == [f"{0:032d}"]


def test_claims_leave_jobs_that_are_not_quiet_yet(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    assert fresh_store.claim_open_jobs(quiet_for=3600, limit=10, lease_seconds=60) == []


def test_an_expired_lease_can_be_taken_again(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    assert fresh_store.lease(REF, 60) is True
    assert fresh_store.lease(REF, 60) is False
    assert [job.reference for job in fresh_store.claim_open_jobs(0, 10, lease_seconds=-1)] == []
    fresh_store.release(REF)
    assert fresh_store.lease(REF, -1) is True  # a lease already run out
    assert fresh_store.lease(REF, 60) is True


def test_a_move_clears_the_lease(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_created(REF, JOB_ID)
    fresh_store.claim_open_jobs(0, 10, 600)
    fresh_store.record_remote_status(JOB_ID, Event.REJECTED, error="x")
    assert fresh_store.lease(REF, 60) is True


def test_repair_updates_a_done_job_only(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.record_created(REF, JOB_ID)
    fresh_store.record_repair(JOB_ID, "/new/path.json")
    assert fresh_store.find(JOB_ID).transcript is None  # running: not a repair
    fresh_store.record_notification(JOB_ID, TRANSCRIPT)
    fresh_store.record_repair(JOB_ID, None, error="lost")
    job = fresh_store.find(JOB_ID)
    assert (job.status, job.transcript, job.error) == (State.DONE, None, "lost")


def test_the_clock_is_the_databases_and_close_to_ours(fresh_store: JobStore) -> None:
    assert abs(fresh_store.now() - time.time()) < 5


def test_a_transaction_keeps_one_time(fresh_store: JobStore) -> None:
    """Everything one transaction writes carries one time, read once from the database's clock."""
    with fresh_store.database.transaction() as tx:
        first = tx.now()
        deadline = time.monotonic() + 5
        while tx.execute(f"SELECT {tx.database.CLOCK} AS now")[0]["now"] == first:  # the database's clock moves on
            assert time.monotonic() < deadline
        assert tx.now() == first  # the transaction's time does not


def test_jobs_filters_by_status_and_creation(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.add_submission(OTHER_REF, "b.wav")
    fresh_store.record_created(OTHER_REF, JOB_ID)
    assert [job.reference for job in fresh_store.jobs()] == [REF, OTHER_REF]
    assert [job.reference for job in fresh_store.jobs(status=State.RUNNING)] == [OTHER_REF]
    assert fresh_store.jobs(created_after=fresh_store.now() + 60) == []


def test_migrations_run_once_however_often_asked(fresh_store: JobStore) -> None:
    assert migrate(fresh_store.database) == migrate(fresh_store.database)
    with fresh_store.database.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) AS n FROM schema_version")[0]["n"] == len(MIGRATIONS)  # each once


def test_placeholders_pass_question_marks_through_untouched(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "what?.wav")
    assert fresh_store.find_by_reference(REF).audio == "what?.wav"


def test_a_move_from_a_stale_read_is_judged_again_from_the_row_as_it_is(fresh_store: JobStore) -> None:
    """What PostgreSQL allows: the row moved (judged not created) between our read and our update."""
    fresh_store.add_submission(REF, "a.wav")
    with fresh_store.database.transaction() as tx:
        stale = fresh_store._row(tx, "reference", REF)
    fresh_store.record_not_created(REF, "no job with this reference")
    with fresh_store.database.transaction() as tx:
        assert fresh_store._move(tx, stale, Event.CREATED, job_id=JOB_ID) == State.RUNNING
    assert fresh_store.find(JOB_ID).status == State.RUNNING


def test_renewed_leases_are_held_again(fresh_store: JobStore) -> None:
    fresh_store.add_submission(REF, "a.wav")
    fresh_store.claim_open_jobs(0, 10, lease_seconds=-1)
    fresh_store.renew([REF], 60)
    assert fresh_store.claim_open_jobs(0, 10, 60) == []


def test_a_follower_sees_every_move_and_commits_or_fails_with_it(fresh_store: JobStore) -> None:
    """What must follow a move (an event to hand on, say) is written in the move's own transaction: it sees
    the row as moved, and if it fails, the move does not happen either."""
    seen: list[tuple[str, str | None]] = []
    store = JobStore(fresh_store.database, followers=(lambda tx, row: seen.append((row["status"], row["job_id"])),))
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    store.record_notification(JOB_ID, TRANSCRIPT)
    assert seen == [(State.RUNNING, JOB_ID), (State.DONE, JOB_ID)]

    def refuse(tx: object, row: object) -> None:
        raise RuntimeError("the follower could not write")

    failing = JobStore(fresh_store.database, followers=(refuse,))
    failing.add_submission(OTHER_REF, "other.wav")
    with pytest.raises(RuntimeError):
        failing.record_created(OTHER_REF, OTHER_ID)
    assert fresh_store.find_by_reference(OTHER_REF).status is State.SUBMITTING
