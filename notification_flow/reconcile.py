"""The reconciler's work for one pass: lease the quiet unfinished jobs, learn their state from as few API reads as
it takes, and move each along the lifecycle; then repair done jobs whose transcript file went missing.

cronjob.py's `run_pass` shows a pass step by step; this module decides each step. Its choices (when a listing is
cheaper than asking for each job, when a `submitting` row may be judged to have created no job) are unit-tested
in tests/unit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from notification_flow.api import (
    HEARTBEAT_SECONDS,
    PAGE_SIZE,
    RETENTION_SECONDS,
    ApiError,
    JobGone,
    JobNotFound,
    SpeechmaticsAPI,
    reference_of,
    rejection_reason,
)
from notification_flow.api import created_at as remote_created_at
from notification_flow.formats import Formats, listed
from notification_flow.jobs import Job, JobStore, StoreUnavailable
from notification_flow.lifecycle import Event, ReconcileOutcome
from notification_flow.notices import addon_notice, record_notification_failures
from notification_flow.payloads import check_transcript
from notification_flow.retention import report_lost
from notification_flow.transcripts import TranscriptStore

log = logging.getLogger("cronjob")
Outcome = ReconcileOutcome


@dataclass(frozen=True)
class ReconcilePolicy:
    """The reconciler's tuning, in one place."""

    grace_seconds: float = 120  # Speechmatics retries a notification for about a minute; then silence means lost
    concurrency: int = 8  # jobs worked on at once
    batch: int = 200  # jobs leased at a time
    lease_seconds: float = 600  # a pass that dies lets its leases run out after this
    # A `submitting` row's client heartbeats while it uploads; after its last heartbeat it could still have
    # created the job for a heartbeat's interval of reading, then the rest of the body and the answer within
    # an API timeout each. Past that, and a margin for a slow API, a listing that does not show the job shows
    # that none was created (one that shows up later all the same is adopted, see `adopt_listed`).
    api_timeout_seconds: float = 30
    creation_margin_seconds: float = 60
    adoption_window_seconds: float = 1800  # how long a `submit_failed` row is still looked for in listings
    clock_skew_seconds: float = 300  # how far our clock and Speechmatics' may disagree when we page back
    retention_seconds: float = RETENTION_SECONDS
    # The repair sweep (see `repair_missing_transcripts`): a done job's file is checked again this long after
    # its last check, so with passes at least hourly a deleted file is found within a day.
    recheck_seconds: float = 86400 - 3600
    check_floor: int = 1_000  # files checked a pass even if not due, so small deployments check every one
    checks_per_pass: int = 100_000  # so that no pass grows without bound, whatever fell due at once
    check_batch: int = 1_000  # done jobs read per query
    repair_lease_seconds: float = 60

    @property
    def could_create_for(self) -> float:
        """How long after a `submitting` row's last heartbeat its client could still create the job."""
        return HEARTBEAT_SECONDS + 2 * self.api_timeout_seconds + self.creation_margin_seconds


class Reconciler:
    def __init__(self, store: JobStore, api: SpeechmaticsAPI, transcripts: TranscriptStore,
                 policy: ReconcilePolicy | None = None) -> None:
        self.store, self.api, self.transcripts = store, api, transcripts
        self.formats = Formats(transcripts, store)  # srt and txt beside the json-v2
        self.policy = policy or ReconcilePolicy()
        self.summary: Counter[str] = Counter()
        self.cut_short: Exception | None = None  # what ended the last pass early, if anything did
        self.held: dict[str, Job] = {}  # leased by this pass and not finished: released when it ends, not
        self.remote = RemoteJobs(api)  # before, so the pass never meets them twice; what the API said of them
        self.doubtful: list[Job] = []  # rows recently judged not created, which a listing may show after all
        self.renewed = time.monotonic()  # when the pass last renewed its leases
        self.counting = threading.Lock()  # the pass's workers count from several threads
        # Set (by a signal handler, say) to stop taking jobs: the ones in hand finish, the rest are released.
        self.stopping = threading.Event()

    def count(self, *outcomes: str) -> None:
        with self.counting:
            self.summary.update(outcomes)

    @contextlib.contextmanager
    def one_pass(self) -> Iterator[None]:
        """The frame of one pass (cronjob.py's `run_pass` is the body): it starts the summary, looks again for
        rows recently judged not created, and at the end releases the leases the pass still holds. One job's
        trouble never stops a pass, and nothing the database or the API does ends a `--loop`: a failure
        here cuts the pass short, `cut_short` says why, and the next pass tries again."""
        self.summary, self.cut_short, self.held = Counter(), None, {}
        self.remote = RemoteJobs(self.api, self.policy.clock_skew_seconds)
        self.renewed = time.monotonic()
        try:
            try:
                self.doubtful = self.store.recently_not_created(self.policy.adoption_window_seconds)
                if self.doubtful:
                    self.ask_api(self.doubtful)
                yield
            finally:
                for reference in self.held:
                    self.store.release(reference)
        except (ApiError, StoreUnavailable, OSError) as error:  # the API, the database or the storage away
            log.warning("pass cut short: %s", error)
            self.cut_short = error
        except Exception as error:  # the last resort: a defect or an answer nobody foresaw
            log.exception("pass cut short: %r", error)
            self.cut_short = error
        if self.cut_short is not None:
            self.count(Outcome.FAILED)

    def claim_quiet_jobs(self) -> list[Job]:
        """Lease the next batch of unfinished jobs quiet for the grace period, oldest first; empty when there
        are none left, when the pass is stopping, or when only jobs it has already met come back (their
        lease ran out mid-pass). The pass holds each lease until the job moves or the pass ends."""
        policy = self.policy
        if time.monotonic() - self.renewed > policy.lease_seconds / 2:  # a long pass: keep what it holds
            self.store.renew(list(self.held), policy.lease_seconds)
            self.renewed = time.monotonic()
        if self.stopping.is_set():
            return []
        jobs = self.store.claim_open_jobs(policy.grace_seconds, policy.batch, policy.lease_seconds)
        fresh = [job for job in jobs if job.reference not in self.held]
        self.held.update((job.reference, job) for job in jobs)
        return fresh

    def ask_api(self, jobs: list[Job]) -> float:
        """Learn about `jobs` from a listing where that pays, and adopt any doubtful row it shows; the answer
        is the moment (by the database's clock) the listing began. Jobs it did not show are asked for one
        by one as they are settled."""
        now = self.store.now()  # before the listing: it shows every job created up to this moment
        try:
            self.remote.learn(jobs, now)
            self.adopt_listed()
        except ApiError as error:  # no listing: each job is asked for on its own instead
            log.warning("listing jobs failed: %s", error)
        return now

    def settle(self, jobs: list[Job], now: float) -> None:
        """Each job, `concurrency` at a time: fetch and publish its transcript if it is done, and mark its
        new state; a job that moved gives up its lease with the move."""
        with ThreadPoolExecutor(self.policy.concurrency) as pool:
            outcomes = list(pool.map(self.reconcile_safely, jobs, [now] * len(jobs)))
        for job, outcome in zip(jobs, outcomes, strict=True):
            if outcome is not None and not outcome.leaves_job_open:
                self.held.pop(job.reference)

    def reconcile_safely(self, job: Job, now: float) -> Outcome | None:
        """The job's outcome; None if the pass is stopping and the job was abandoned before it was started."""
        if self.stopping.is_set():
            return None
        try:
            outcome = self.reconcile(job, now)
        except Exception as error:  # one job's trouble must never stop the others
            log.warning("job %s (%s): %s", self.job_id_of(job), job.reference, error)
            outcome = Outcome.FAILED
        if not outcome.leaves_job_open and outcome is not Outcome.ALREADY_FINAL:  # one line per job it changed
            job_id = self.job_id_of(job)
            log.info("job %s: %s", job_id, outcome, extra={"fields": {
                "job_id": job_id, "reference": job.reference, "outcome": str(outcome)}})
        self.count("checked", outcome)
        return outcome

    def job_id_of(self, job: Job) -> str:
        """The job's id for a log line: the row's, else the one a listing found for its reference."""
        found = self.remote.by_reference.get(job.reference)
        return job.job_id or (found["id"] if found else f"- (reference {job.reference})")

    def reconcile(self, job: Job, now: float) -> Outcome:
        remote, job_id = self.remote, job.job_id
        if job_id is None:  # client.py died or timed out between creating the job and recording its id
            found = remote.by_reference.get(job.reference)
            if found is None:
                if not self.judged_not_created(job):
                    return Outcome.STILL_RUNNING
                moved = self.store.record_not_created(job.reference, "Speechmatics has no job with this reference")
                return Outcome.SUBMIT_FAILED if moved else Outcome.ALREADY_FINAL
            if self.store.record_created(job.reference, found["id"]) is None:
                log.warning("job %s carries reference %s, whose row has another job id", found["id"], job.reference)
                return Outcome.FAILED
            job_id = found["id"]
        try:
            details = remote.details(job_id)
        except (JobNotFound, JobGone) as error:
            if isinstance(error, JobNotFound) and job.created_at > now - self.policy.retention_seconds:
                raise  # too young to have expired: a wrong region or a fault; try again next pass
            self.store.record_remote_status(job_id, Event.EXPIRED, error=str(error))
            return Outcome.EXPIRED
        return self.apply(job_id, details)

    def judged_not_created(self, job: Job) -> bool:
        """A `submitting` row whose reference the listing does not show created no job, but only if that
        listing began after the last moment its client could have created the job, and reached back past
        the row's creation. Absence seen any earlier may still change."""
        listing_began = self.remote.began  # by the database's clock, like the row's times
        return listing_began >= job.updated_at + self.policy.could_create_for and self.remote.listed_back_to(
            job.created_at)

    def adopt_listed(self) -> None:
        """A listing that shows a job carrying the reference of a row recently judged `submit_failed` proves
        the judgement wrong (the API was slower than any deadline): adopt the job, so it is fetched like any
        other. Rows judged longer ago than the adoption window are no longer looked for."""
        for job in self.doubtful:
            found = self.remote.by_reference.get(job.reference)
            if found and self.store.record_created(job.reference, found["id"]):
                log.info("job %s: adopted for %s, which had been judged not created", found["id"], job.reference)

    def apply(self, job_id: str, details: dict[str, Any]) -> Outcome:
        record_notification_failures(self.store, job_id, details)  # shown by --list, counted by /metrics
        status = details["status"]
        if status == "done":
            path, failed_addons = self.fetch_transcript(job_id)
            moved = self.store.record_remote_status(job_id, Event.TRANSCRIPT_STORED, transcript=path,
                                                    notice=addon_notice(failed_addons))
            return Outcome.RECOVERED if moved else Outcome.ALREADY_FINAL
        if status == "rejected":
            reason = rejection_reason(details) or "rejected by Speechmatics"
            self.store.record_remote_status(job_id, Event.REJECTED, error=reason)
            return Outcome.REJECTED
        if status in ("deleted", "expired"):
            event = Event.DELETED if status == "deleted" else Event.EXPIRED
            self.store.record_remote_status(job_id, event, error=f"job {status} at Speechmatics")
            return Outcome(status)
        return Outcome.STILL_RUNNING

    def fetch_transcript(self, job_id: str) -> tuple[str, str | None]:
        """Where the job's transcript is now stored, and the add-ons it says failed."""
        with self.transcripts.incoming_file() as incoming:
            self.api.download_transcript(job_id, incoming)
            check_transcript(incoming, job_id)  # a truncated or empty download is never published
            if self.transcripts.publish(job_id, incoming):
                log.info("stored transcript %s.json", job_id)
        self.formats.fetch_missing(self.api, job_id)  # any srt or txt the job lacks, checked against the json
        return self.transcripts.location(job_id), incoming.failed_addons

    def repair_missing_transcripts(self) -> None:
        """A done job promises its file; if someone deleted it, fetch it again while Speechmatics still has
        it (a week). Once it cannot, say so on the job and stop trying.

        Each done job records when its file was last checked (`checked_at`: 0 for never). A pass reads the
        jobs whose last check is older than `recheck_seconds`, longest ago first, in batches through an
        index, checks each file (one stat or HEAD), fetches the missing ones again, and records the check.
        So every file is looked at about once a day, a pass's work is the jobs that fell due since the last
        one (it grows with the jobs arriving, never with the history kept), and nothing else remembers
        where the sweep stands. A job older than Speechmatics' retention cannot be fetched again: it is
        marked never to be checked (NULL), once, and costs no pass after that. A check or repair that fails
        for now (a storage error, an API error) is counted as failed and recorded as checked at the due
        boundary, so the next pass tries it again, and this one moves on. `checks_per_pass` bounds a pass
        when many jobs fall due together (after an upgrade, say); the next pass goes on with the rest. A
        pass checks at least `check_floor` files, those checked longest ago, due or not, so a small
        deployment checks every file on every pass."""
        policy, now = self.policy, self.store.now()
        due, checked = now - policy.recheck_seconds, 0
        before, size = math.inf, policy.check_floor  # the first batch: the files checked longest ago, due or not
        while not self.stopping.is_set():
            jobs = self.store.due_checks(before, size)
            marks: dict[float | None, list[str]] = {}
            for job in jobs:
                marks.setdefault(self.check_file(job, now, due), []).append(job.reference)
            for at, references in marks.items():
                self.store.mark_checked(references, at)
            checked += len(jobs)
            if len(jobs) < size or checked >= policy.checks_per_pass:
                break
            before, size = due, min(policy.check_batch, policy.checks_per_pass - checked)
        log.info("repair sweep: checked %d done jobs", checked)

    def check_file(self, job: Job, now: float, due: float) -> float | None:
        """Check one done job's file, fetching it again if missing; the `checked_at` to record."""
        if not job.job_id or not job.transcript or job.created_at < now - self.policy.retention_seconds:
            return None  # nothing to check, or nothing Speechmatics could give again
        try:
            present = self.transcripts.exists(job.job_id) and not self.formats.missing(job.job_id, listed(job.formats))
        except Exception as error:  # one bad file or object costs its own check, never the pass
            log.warning("job %s: cannot check its transcript, tried again next pass: %s", job.job_id, error)
            self.count(Outcome.FAILED)
            return due
        if not present and job.remote_deleted_at is not None:  # deleted at Speechmatics: nothing to fetch it from
            report_lost(self.store, job)
            self.count("lost")
            return None
        return now if present else self.repair(job, now, due)

    def repair(self, job: Job, now: float, due: float) -> float | None:
        assert job.job_id is not None
        if not self.store.lease(job.reference, self.policy.repair_lease_seconds):
            return due  # another pass is on it: look again next pass
        try:
            self.store.record_repair(job.job_id, self.fetch_transcript(job.job_id)[0])
            log.info("job %s: %s", job.job_id, Outcome.REPAIRED)
            self.count(Outcome.REPAIRED)
            return now
        except (JobNotFound, JobGone) as error:
            self.count(Outcome.FAILED)
            if isinstance(error, JobNotFound) and job.created_at > now - self.policy.retention_seconds:
                log.warning("job %s: transcript missing, and the API answered 404 for now: %s", job.job_id, error)
                return due
            # 410, or 404 for a job older than Speechmatics keeps any: it is gone for good
            log.warning("job %s: transcript missing, and Speechmatics no longer has it", job.job_id)
            self.store.record_repair(job.job_id, None, error="transcript file lost; Speechmatics no longer has it")
            return None
        except Exception as error:  # an API error, a full disk, a bad download: tried again next pass
            log.warning("job %s: transcript missing and not fetched yet: %s", job.job_id, error)
            self.count(Outcome.FAILED)
            return due
        finally:
            self.store.release(job.reference)


class RemoteJobs:
    """What Speechmatics says about our unfinished jobs, from as few API reads as it takes.

    One page of `GET /v2/jobs` answers up to 100 jobs, so the jobs of a pass are looked up by paging back to
    the oldest of them (once: batches come oldest first), as long as that costs fewer reads than asking for
    each job. Jobs the pages did not show are asked for one by one; `submitting` rows, which only a listing
    can find (by reference), are judged absent only where the listing reached back past their creation."""

    def __init__(self, api: SpeechmaticsAPI, clock_skew_seconds: float = 300) -> None:
        self.api = api
        self.clock_skew = clock_skew_seconds
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_reference: dict[str, dict[str, Any]] = {}
        self.oldest_listed = float("inf")
        self.began = float("-inf")  # when the listing began, by the database's clock

    def learn(self, jobs: list[Job], now: float) -> None:
        """List back past these jobs' creation if that is worth it; `now` (the database's clock) is when the
        listing begins."""
        unlisted = [job for job in jobs if not self.knows(job) and not self.listed_back_to(job.created_at)]
        if len(unlisted) > 1 or any(job.job_id is None for job in unlisted):
            self.began = now
            self.list_back_to(min(job.created_at for job in unlisted) - self.clock_skew, unlisted)

    def list_back_to(self, since: float, jobs: list[Job]) -> None:
        missing_ids = {job.job_id for job in jobs if job.job_id}
        missing_references = {job.reference for job in jobs if not job.job_id}  # only a listing finds these
        self.oldest_listed = float("inf")
        for seen, item in enumerate(self.api.recent_jobs(since), start=1):
            reference = reference_of(item)
            self.by_id[item["id"]] = item
            if reference:
                self.by_reference[reference] = item
            missing_ids.discard(item["id"])
            missing_references.discard(reference)
            self.oldest_listed = min(self.oldest_listed, remote_created_at(item))
            too_costly = seen // PAGE_SIZE > len(jobs) and not missing_references  # asking each is cheaper
            if not (missing_ids or missing_references) or too_costly:
                return
        self.oldest_listed = min(self.oldest_listed, since)

    def knows(self, job: Job) -> bool:
        return job.job_id in self.by_id if job.job_id else job.reference in self.by_reference

    def listed_back_to(self, moment: float) -> bool:
        return self.oldest_listed <= moment - self.clock_skew

    def details(self, job_id: str) -> dict[str, Any]:
        return self.by_id.get(job_id) or self.api.job(job_id)
