"""The job lifecycle, stated once: the states a job can be in, the events that move it, and where each may go.

`TRANSITIONS` is the only place a move is allowed. The job store asks `next_state` before every change of
state and changes nothing when the answer is None, so whichever process learns something first, and in
whatever order notifications, listings and the client's own answer arrive, a job only ever moves along this
table. The README's state list is checked against it by a test.

Two moves look backwards and are deliberate, because they follow evidence that outranks what came before:
a job that Speechmatics turns out to have (its reference seen in a listing or the API's answer) is adopted
even after we recorded that no job was created, and a valid transcript outranks a failure report, so the
outcome of conflicting notifications never depends on their order.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    SUBMITTING = "submitting"  # the row is written before the API call; no job id known yet
    RUNNING = "running"  # Speechmatics has the job and we know its id
    DONE = "done"  # the transcript file exists and holds the json-v2 transcript
    REJECTED = "rejected"  # Speechmatics could not transcribe it; `error` says why
    EXPIRED = "expired"  # Speechmatics deleted the job's data before we fetched it
    DELETED = "deleted"  # someone deleted the job at Speechmatics before we fetched it
    SUBMIT_FAILED = "submit_failed"  # the submission certainly created no job (as far as we can see)
    PURGED = "purged"  # its transcript removed by retention or erasure (retention.py); the row is a tombstone


class Event(StrEnum):
    CREATED = "created"  # a job carrying the row's reference exists: its id is learned
    NOT_CREATED = "not_created"  # an answer, or a listing taken late enough, shows no job was created
    TRANSCRIPT_STORED = "transcript_stored"  # a valid json-v2 transcript is published as <job_id>.json
    REJECTED = "rejected"  # Speechmatics reported it could not do the job (notification status or job status)
    EXPIRED = "expired"  # the API answers 410 (or 404 for a job older than its retention)
    DELETED = "deleted"  # the API lists the job as deleted
    PURGED = "purged"  # retention or erasure removed what was kept of a finished job (retention.py)


# How a job ended: what the hand-off hands on, and what retention may purge.
FINISHED_STATES = (State.DONE, State.REJECTED, State.EXPIRED, State.DELETED, State.SUBMIT_FAILED)

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.SUBMITTING, Event.CREATED): State.RUNNING,
    (State.SUBMITTING, Event.NOT_CREATED): State.SUBMIT_FAILED,
    (State.SUBMIT_FAILED, Event.CREATED): State.RUNNING,  # the job turned up after all: adopt it
    (State.RUNNING, Event.TRANSCRIPT_STORED): State.DONE,
    (State.RUNNING, Event.REJECTED): State.REJECTED,
    (State.RUNNING, Event.EXPIRED): State.EXPIRED,
    (State.RUNNING, Event.DELETED): State.DELETED,
    (State.REJECTED, Event.TRANSCRIPT_STORED): State.DONE,  # a transcript outranks a failure report
    # Our own retention, never anything Speechmatics says: only a finished job is purged, and it stays so.
    **{(state, Event.PURGED): State.PURGED for state in FINISHED_STATES},
}

OPEN_STATES = (State.SUBMITTING, State.RUNNING)  # the reconciler works on these
SETTLED_STATES = tuple(state for state in State if state not in OPEN_STATES)  # it leaves these alone
# Nothing that arrives (a notification, an answer of the API) moves these: whatever arrives later is a
# duplicate. Only our own retention may still purge them.
TERMINAL_STATES = tuple(state for state in State
                        if not any(start is state and event is not Event.PURGED for start, event in TRANSITIONS))


def next_state(state: State | str, event: Event) -> State | None:
    """Where `event` takes a job in `state`, or None if the table does not allow it (nothing changes)."""
    return TRANSITIONS.get((State(state), event))


class NotificationStatus(StrEnum):
    """The `status` query parameter Speechmatics appends to the notification URL."""

    SUCCESS = "success"
    ERROR = "error"
    FETCH_ERROR = "fetch_error"
    TRIM_ERROR = "trim_error"

    @property
    def event(self) -> Event:
        return Event.TRANSCRIPT_STORED if self is NotificationStatus.SUCCESS else Event.REJECTED


class NotificationOutcome(StrEnum):
    """What one notification did: the `outcome` of the server's answer and log line."""

    DONE = "done"  # the transcript is stored and the job is done
    REJECTED = "rejected"  # the job is recorded as rejected
    DUPLICATE = "duplicate"  # nothing left to do: the job was already final (or the transcript stored)
    WAITING = "waiting"  # success without a transcript we could get: cronjob.py fetches it
    UNAUTHENTICATED = "unauthenticated"
    WRONG_JOB = "token of another job"
    ADDRESS_NOT_ALLOWED = "address not allowed"
    INVALID_JOB_ID = "invalid job id"
    INVALID_STATUS = "invalid status"
    BODY_TOO_LARGE = "body too large"
    UNREADABLE_BODY = "unreadable body"
    NOT_FETCHED_YET = "transcript not fetched yet"
    UNAVAILABLE = "temporarily unavailable"
    UNPROVEN = "job id not proven yet"  # the token's row has no job id, and the API cannot say whose it is now


class ReconcileOutcome(StrEnum):
    """What one reconciler step did for one job: the words of cronjob.py's summary."""

    RECOVERED = "recovered"  # the transcript was fetched and the job is done
    REPAIRED = "repaired"  # a done job's missing or invalid file was fetched again
    STILL_RUNNING = "still running"  # nothing to do yet: looked at again next pass
    FAILED = "failed"  # this job could not be reconciled now: retried next pass
    REJECTED = "rejected"
    EXPIRED = "expired"
    DELETED = "deleted"
    SUBMIT_FAILED = "submit failed"
    ALREADY_FINAL = "already final"  # someone else (a notification, another pass) finished it first

    @property
    def leaves_job_open(self) -> bool:
        return self in (ReconcileOutcome.STILL_RUNNING, ReconcileOutcome.FAILED)
