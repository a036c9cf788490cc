"""Keep data only as long as it is needed: delete at Speechmatics once stored, purge old transcripts, forget a job.

Speechmatics keeps a job's audio, transcript and config for a week unless we delete it, and nothing here expires
by itself, so this module does the forgetting (see docs/privacy.md):

- DELETE_AFTER_STORE: the wish to delete a job at Speechmatics is written by `want_deletion`, a follower of the
  job store, in the transaction that records the job `done` or `rejected`; the process that stored it then
  carries it out (`Deleter`), and cronjob.py finishes what a failed call or a killed process left. Never forced,
  since a job we have stored is no longer running; 404 and 410 mean it is already gone.
- The repair sweep cannot fetch again what Speechmatics no longer has: `report_lost` says so, once, loudly.
- KEEP_TRANSCRIPTS_DAYS: `purge_old` removes transcripts of finished jobs created before the cut-off and leaves
  their rows `purged`, a tombstone that no notification or pass changes again.
- `client.py --forget`: `forget` erases one job's data here and there, on request.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from notification_flow.api import ApiError, SpeechmaticsAPI
from notification_flow.db import Row, StoreUnavailable, Transaction
from notification_flow.formats import FORMATS
from notification_flow.jobs import Follower, Job, JobStore
from notification_flow.lifecycle import FINISHED_STATES, Event, NotificationOutcome, State
from notification_flow.metrics import gauge
from notification_flow.transcripts import TranscriptStore, open_transcripts

if TYPE_CHECKING:
    from flask import Response

    from notification_flow.settings import Settings

log = logging.getLogger("retention")

DAY_SECONDS = 86400
LOST = "transcript lost: the file is missing or damaged and the job was deleted at Speechmatics; restore it " \
       "from a backup"


# -- DELETE_AFTER_STORE ---------------------------------------------------------------------------------
def followers(settings: Settings) -> tuple[Follower, ...]:
    """The job store's followers these settings ask for."""
    return (want_deletion,) if settings.delete_after_store else ()


def want_deletion(tx: Transaction, row: Row) -> None:
    """In the transaction that stores a job's transcript or rejection: record the wish to delete it there."""
    if row.get("status") in (State.DONE, State.REJECTED) and row.get("job_id") and not row.get("remote_deleted_at"):
        tx.execute("INSERT INTO remote_deletions (reference, job_id, wanted_at) VALUES ($1, $2, $3) "
                   "ON CONFLICT (reference) DO NOTHING", row["reference"], row["job_id"], tx.now())


def record_deleted(store: JobStore, reference: str) -> None:
    """The job is gone at Speechmatics: the wish is fulfilled, and the row says when."""
    with store.database.transaction() as tx:
        tx.execute("DELETE FROM remote_deletions WHERE reference = $1", reference)
        tx.execute("UPDATE jobs SET remote_deleted_at = COALESCE(remote_deleted_at, $1) WHERE reference = $2",
                   tx.now(), reference)


class Deleter:
    """Carries out recorded wishes to delete jobs at Speechmatics."""

    def __init__(self, store: JobStore, api: SpeechmaticsAPI) -> None:
        self.store, self.api = store, api

    def delete_now(self, job_id: str) -> None:
        """The server, once its answer is sent: the job it just stored, if a wish for it waits. Anything that
        goes wrong is left to cronjob.py's next pass."""
        try:
            with self.store.database.transaction(write=False) as tx:
                rows = tx.execute("SELECT reference, job_id FROM remote_deletions WHERE reference = "
                                  "(SELECT reference FROM jobs WHERE job_id = $1)", job_id)
        except StoreUnavailable as error:
            log.warning("job %s: deletion at Speechmatics left to cronjob.py: %s", job_id, error)
            return
        for row in rows:
            self.carry_out(row["reference"], row["job_id"])

    def carry_out(self, reference: str, job_id: str) -> bool:
        """One deletion (never forced); False if it failed and waits for the next pass."""
        try:
            deleted = self.api.delete_job(job_id)
            record_deleted(self.store, reference)
        except (ApiError, StoreUnavailable) as error:
            log.warning("job %s: not deleted at Speechmatics yet, the next cronjob.py pass tries again: %s",
                        job_id, error)
            return False
        log.info("job %s: %s", job_id, "deleted at Speechmatics" if deleted else "already gone at Speechmatics",
                 extra={"fields": {"job_id": job_id, "reference": reference, "outcome": "deleted remotely"}})
        return True

    def finish_pending(self, limit: int = 1000) -> Counter[str]:
        """cronjob.py: the wishes a failed call or a killed process left, oldest first, at most `limit`."""
        with self.store.database.transaction(write=False) as tx:
            rows = tx.execute("SELECT reference, job_id FROM remote_deletions ORDER BY wanted_at LIMIT $1", limit)
        return Counter("deleted remotely" if self.carry_out(row["reference"], row["job_id"])
                       else "deletion failed" for row in rows)


def delete_once_answered(deleter: Deleter | None, response: Response, job_id: str, outcome: str) -> Response:
    """The server: once the answer to a notification that stored the job is sent, delete the job. Speechmatics
    need not wait for the call, and a worker killed before it leaves the wish for cronjob.py."""
    if deleter and outcome in (NotificationOutcome.DONE, NotificationOutcome.REJECTED):
        response.call_on_close(functools.partial(deleter.delete_now, job_id))
    return response


def forgotten(store: JobStore, job_id: str) -> bool:
    """Whether the job is a tombstone (`purged`): nothing it is sent may be stored again."""
    job = store.find(job_id)
    return job is not None and job.status is State.PURGED


# -- the repair sweep's lost transcripts --------------------------------------------------------------------
def report_lost(store: JobStore, job: Job) -> None:
    """A done job's file is missing or damaged and Speechmatics no longer has the job: nothing can repair it.
    Said once (a log line naming the job, `lost_at` for the metric and its alert); never checked again."""
    log.error("job %s (reference %s): %s", job.job_id, job.reference, LOST,
              extra={"fields": {"job_id": job.job_id, "reference": job.reference, "outcome": "lost"}})
    with store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET transcript = NULL, error = $1, lost_at = $2, checked_at = NULL "
                   "WHERE reference = $3 AND status = $4", LOST, tx.now(), job.reference, State.DONE)


def facts(tx: Transaction, now: float) -> dict[str, int]:
    """For /metrics: transcripts recorded lost in the last day, and deletions waiting (both index ranges)."""
    lost = tx.execute("SELECT COUNT(*) AS n FROM jobs WHERE lost_at > $1", now - DAY_SECONDS)[0]["n"]
    pending = tx.execute("SELECT COUNT(*) AS n FROM remote_deletions")[0]["n"]
    return {"lost": int(lost), "deletions_pending": int(pending)}


def gauges(tx: Transaction) -> list[Any]:
    """The two gauges of `facts`, for /metrics: read in the scrape's one transaction, so a database away shows as
    `database_up 0` alone."""
    found = facts(tx, tx.now())
    return [gauge("transcripts_lost_last_day", "Done jobs whose transcript the repair sweep found missing or "
                  "damaged in the last day with no copy left at Speechmatics (DELETE_AFTER_STORE)", found["lost"]),
            gauge("deletions_pending", "Jobs stored here and not yet deleted at Speechmatics (DELETE_AFTER_STORE)",
                  found["deletions_pending"])]


# -- KEEP_TRANSCRIPTS_DAYS ----------------------------------------------------------------------------------
def remove_transcript(transcripts: TranscriptStore, job_id: str) -> bool:
    """Remove the job's transcript, file or object, and the srt and txt beside it; True if there was a json-v2."""
    removed = transcripts.delete(transcripts.key_for(job_id))
    for fmt in FORMATS:
        transcripts.delete(transcripts.key_for(job_id, fmt))
    return removed


def purge_old(store: JobStore, transcripts: TranscriptStore, days: int, limit: int = 1000) -> int:
    """Remove the transcripts of finished jobs created more than `days` ago and move their rows to `purged`,
    at most `limit` a pass, oldest first: one range of the (status, created_at) index per state, so the cost is
    the jobs that fell due, never the history. The file goes first: a pass killed in between finds the row
    again and removes nothing twice."""
    purged = 0
    with store.database.transaction(write=False) as tx:
        cutoff = tx.now() - days * DAY_SECONDS
        due = [row for state in FINISHED_STATES for row in tx.execute(
            "SELECT reference, job_id FROM jobs WHERE status = $1 AND created_at < $2 ORDER BY created_at LIMIT $3",
            state, cutoff, limit)]
    for row in due[:limit]:
        try:
            if row["job_id"]:
                remove_transcript(transcripts, row["job_id"])
        except OSError as error:  # one file or object that cannot go costs its own purge, never the others'
            log.warning("retention: job %s not purged, tried again next pass: %s", row["job_id"], error)
            continue
        purged += store.record_purged(row["reference"]) is not None
    if purged:
        log.info("retention: purged %d jobs created more than %d days ago", purged, days)
    return purged


@dataclass(frozen=True)
class Retention:
    """cronjob.py's share: finish pending deletions, and purge what is past KEEP_TRANSCRIPTS_DAYS."""

    keep_days: int | None

    def run(self, store: JobStore, api: SpeechmaticsAPI, transcripts: TranscriptStore) -> Counter[str]:
        """What the pass did, to add to its summary."""
        done = Deleter(store, api).finish_pending()
        if self.keep_days:
            done["purged"] += purge_old(store, transcripts, self.keep_days)
        return done


# -- client.py --forget --------------------------------------------------------------------------------------
def add_forget_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--forget", metavar="JOB_ID_OR_REFERENCE", help="erase one job: its transcript, the job at "
                        "Speechmatics (even a running one), its audio name and error text; the row stays as a "
                        "tombstone, so nothing stores it again")


def forget(store: JobStore, settings: Settings, key: str) -> int:
    """`client.py --forget`: erase one job, print what went, and answer the exit code."""
    with SpeechmaticsAPI(settings.api_key or "", settings.batch_url, timeout=settings.api_timeout) as api:
        code, line = erase(store, api, open_transcripts(settings), key)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def erase(store: JobStore, api: SpeechmaticsAPI, transcripts: TranscriptStore, key: str) -> tuple[int, str]:
    """Erase one job; (exit code, the line to print). The job goes at Speechmatics first (forced: the user
    asked), then the row becomes a tombstone, so that nothing writes the transcript again, then the file goes."""
    job = store.find(key) or store.find_by_reference(key)
    if job is None:
        return 1, f"{key}: no job with this id or reference is recorded here; nothing removed"
    name = f"job {job.job_id or '-'} (reference {job.reference})"
    if job.job_id is None:
        return 1, f"{name}: still {job.status} without a job id; nothing removed (try again once it has one)"
    removed = []
    if job.remote_deleted_at is None:
        try:
            if api.delete_job(job.job_id, force=True):
                removed.append("the job at Speechmatics")
        except ApiError as error:
            return 75, f"{name}: could not delete the job at Speechmatics, nothing removed; try again: {error}"
        record_deleted(store, job.reference)
    if job.status in (State.SUBMITTING, State.RUNNING):
        store.record_remote_status(job.job_id, Event.DELETED)
    if store.record_purged(job.reference) is not None and (job.audio or job.error or job.transcript):
        removed.append("its audio name and error text")
    try:
        if remove_transcript(transcripts, job.job_id):
            removed.insert(0, f"transcript {transcripts.location(job.job_id)}")
    except OSError as error:  # the row is a tombstone already: run again to remove the file
        return 75, f"{name}: could not remove its transcript; run --forget again: {error}"
    if not removed:
        return 0, f"{name}: nothing left to remove"
    return 0, f"{name}: removed {', '.join(removed)}"
