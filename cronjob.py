"""Reconcile every job whose notification never arrived: ask Speechmatics, fetch what is done, record the rest.

Run it from cron or a systemd timer (one pass, the default) or as a service (`--loop SECONDS`). Each pass
leases the jobs it works on, so two overlapping passes never do the same job twice, and a pass that dies
just lets its leases expire. It learns statuses from `GET /v2/jobs` pages where that is cheaper than one
call per job, stays under Speechmatics' 50 reads per second, and one failing job never stops the pass.

    python cronjob.py            # jobs quiet for longer than the grace period
    python cronjob.py --all      # every unfinished job, now
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from notification_flow import settings as config
from notification_flow.api import PAGE_SIZE, ApiError, JobGone, JobNotFound, SpeechmaticsAPI, created_at
from notification_flow.cli import exit_on_bad_settings, setup_logging
from notification_flow.db import Job, JobStore, StoreUnavailable, open_store
from notification_flow.storage import TranscriptStore

# Speechmatics retries a notification for about a minute; after twice that, silence means it was lost.
DEFAULT_GRACE_SECONDS = 120
LEASE_SECONDS = 600
BATCH = 200
CLOCK_SKEW_SECONDS = 300  # how far our clock and Speechmatics' may disagree when we page back in time
LEFT_OPEN = ("still running", "failed")
# client.py touches a row it is still uploading or waiting to upload at least every 30 s, so a `submitting`
# row quiet for longer, whose reference Speechmatics does not know, belongs to a client that died before
# creating a job.
CLIENT_HEARTBEAT_SECONDS = 60
RETENTION_SECONDS = 7 * 86400  # Speechmatics deletes a job's data a week after it was created
REPAIRS_PER_PASS = 100
log = logging.getLogger("cronjob")


class Reconciler:
    def __init__(self, store: JobStore, api: SpeechmaticsAPI, transcripts: TranscriptStore,
                 grace: float, concurrency: int) -> None:
        self.store, self.api, self.transcripts = store, api, transcripts
        self.grace, self.concurrency = grace, concurrency
        self.summary: Counter[str] = Counter()

    def run_pass(self) -> Counter[str]:
        self.summary = Counter()
        try:
            self.reconcile_open_jobs()
            self.repair_missing_transcripts()
            self.transcripts.remove_leftovers()
            self.store.forget_early_notifications(received_before=time.time() - RETENTION_SECONDS)
        except StoreUnavailable as error:  # the next pass (or --loop round) tries again
            log.warning("database unavailable, pass cut short: %s", error)
            self.summary["failed"] += 1
        return self.summary

    def reconcile_open_jobs(self) -> None:
        quiet_since = time.time() - self.grace
        unfinished: list[Job] = []  # keep their leases until the pass ends, so it does not see them twice
        remote = RemoteJobs(self.api)
        try:
            while jobs := self.store.claim_open_jobs(quiet_since, BATCH, LEASE_SECONDS):
                try:
                    remote.learn(jobs)
                except ApiError as error:  # no listing: each job is asked for on its own instead
                    log.warning("listing jobs failed: %s", error)
                with ThreadPoolExecutor(self.concurrency) as pool:
                    outcomes = list(pool.map(self.reconcile_safely, jobs, [remote] * len(jobs),
                                             [quiet_since] * len(jobs)))
                unfinished += [job for job, outcome in zip(jobs, outcomes, strict=True) if outcome in LEFT_OPEN]
        finally:
            for job in unfinished:
                self.store.release(job.reference)

    def reconcile_safely(self, job: Job, remote: RemoteJobs, quiet_since: float) -> str:
        try:
            outcome = self.reconcile(job, remote, quiet_since)
        except Exception as error:  # one job's trouble must never stop the others
            log.warning("job %s (%s): %s", job.job_id or "-", job.reference, error)
            outcome = "failed"
        self.summary["checked"] += 1
        self.summary[outcome] += 1
        return outcome

    def reconcile(self, job: Job, remote: RemoteJobs, quiet_since: float) -> str:
        job_id = job.job_id
        if job_id is None:  # client.py died or timed out between creating the job and recording its id
            found = remote.by_reference.get(job.reference)
            if found is None:
                client_may_be_alive = job.updated_at > min(quiet_since, time.time() - CLIENT_HEARTBEAT_SECONDS)
                if client_may_be_alive or not remote.listed_back_to(job.created_at):
                    return "still running"
                self.store.record_submit_failed(job.reference, "Speechmatics has no job with this reference")
                return "submit failed"
            self.store.record_submitted(job.reference, found["id"])
            job_id = found["id"]
        try:
            details = remote.details(job_id)
        except (JobNotFound, JobGone) as error:
            if isinstance(error, JobNotFound) and job.created_at > time.time() - RETENTION_SECONDS:
                raise  # too young to have expired: a wrong region or a fault; try again next pass
            self.store.finish(job_id, "expired", error=str(error))
            return "expired"
        return self.apply(job_id, details)

    def apply(self, job_id: str, details: dict[str, Any]) -> str:
        status = details["status"]
        if status == "done":
            path = self.fetch_transcript(job_id)
            return "recovered" if self.store.finish(job_id, "done", transcript=path) else "already final"
        if status == "rejected":
            errors = details.get("errors") or []
            reason = errors[-1].get("message") if errors else "rejected by Speechmatics"
            self.store.finish(job_id, "rejected", error=reason)
            return "rejected"
        if status in ("deleted", "expired"):
            self.store.finish(job_id, status, error=f"job {status} at Speechmatics")
            return status
        return "still running"

    def fetch_transcript(self, job_id: str) -> str:
        with self.transcripts.incoming_file() as incoming:
            self.api.download_transcript(job_id, incoming)
            if self.transcripts.store(job_id, incoming):
                log.info("stored transcript %s.json", job_id)
        return str(self.transcripts.path_for(job_id))

    def repair_missing_transcripts(self) -> None:
        """A done job promises its file; if someone deleted it, fetch it again while Speechmatics still has
        it (a week), a bounded number per pass. Once it cannot, say so on the job and stop trying."""
        recent = self.store.jobs(status="done", created_after=time.time() - RETENTION_SECONDS)
        missing = [job for job in recent if job.job_id and job.transcript and not self.transcripts.exists(job.job_id)]
        for job in missing[:REPAIRS_PER_PASS]:
            if not self.store.lease(job.reference, 60):
                continue  # another pass is on it
            try:
                self.store.set_transcript(job.job_id, self.fetch_transcript(job.job_id))
                self.summary["repaired"] += 1
            except (JobNotFound, JobGone):
                self.store.set_transcript(job.job_id, None, error="transcript file lost; Speechmatics no longer "
                                          "has it")
                self.summary["failed"] += 1
            except (ApiError, OSError) as error:
                log.warning("job %s: transcript missing and not fetched yet: %s", job.job_id, error)
                self.summary["failed"] += 1
            finally:
                self.store.release(job.reference)


class RemoteJobs:
    """What Speechmatics says about our unfinished jobs, from as few API reads as it takes.

    One page of `GET /v2/jobs` answers up to 100 jobs, so the jobs of a pass are looked up by paging back to
    the oldest of them (once: batches come oldest first), as long as that costs fewer reads than asking for
    each job. Jobs the pages did not show are asked for one by one; `submitting` rows, which only a listing
    can find (by reference), are judged absent only where the listing reached back past their creation."""

    def __init__(self, api: SpeechmaticsAPI) -> None:
        self.api = api
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_reference: dict[str, dict[str, Any]] = {}
        self.oldest_listed = float("inf")

    def learn(self, jobs: list[Job]) -> None:
        unlisted = [job for job in jobs if not self.knows(job) and not self.listed_back_to(job.created_at)]
        if len(unlisted) > 1 or any(job.job_id is None for job in unlisted):
            self.list_back_to(min(job.created_at for job in unlisted) - CLOCK_SKEW_SECONDS, unlisted)

    def list_back_to(self, since: float, jobs: list[Job]) -> None:
        missing_ids = {job.job_id for job in jobs if job.job_id}
        missing_references = {job.reference for job in jobs if not job.job_id}  # only a listing finds these
        self.oldest_listed = float("inf")
        for seen, item in enumerate(self.api.recent_jobs(since), start=1):
            reference = ((item.get("config") or {}).get("tracking") or {}).get("reference")
            self.by_id[item["id"]] = item
            if reference:
                self.by_reference[reference] = item
            missing_ids.discard(item["id"])
            missing_references.discard(reference)
            self.oldest_listed = min(self.oldest_listed, created_at(item))
            too_costly = seen // PAGE_SIZE > len(jobs) and not missing_references  # asking each is cheaper
            if not (missing_ids or missing_references) or too_costly:
                return
        self.oldest_listed = min(self.oldest_listed, since)

    def knows(self, job: Job) -> bool:
        return job.job_id in self.by_id if job.job_id else job.reference in self.by_reference

    def listed_back_to(self, moment: float) -> bool:
        return self.oldest_listed <= moment - CLOCK_SKEW_SECONDS

    def details(self, job_id: str) -> dict[str, Any]:
        return self.by_id.get(job_id) or self.api.job(job_id)


def print_summary(summary: Counter[str]) -> None:
    recovered = summary["recovered"] + summary["repaired"]
    print(f"checked {summary['checked']}, recovered {recovered}, still running {summary['still running']}, "
          f"failed {summary['failed']}" + "".join(
              f", {name} {summary[name]}" for name in ("rejected", "expired", "deleted", "submit failed")
              if summary[name]), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit codes: 0 nothing failed, 1 some job could not be "
                                     "reconciled (it is retried next pass), 2 bad settings.")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS,
                        help=f"leave jobs alone until they have been quiet this many seconds "
                        f"(default: {DEFAULT_GRACE_SECONDS}, a little over Speechmatics' notification retries)")
    parser.add_argument("--all", action="store_true", help="ignore the grace period")
    parser.add_argument("--loop", type=float, metavar="SECONDS", help="run a pass every SECONDS until stopped")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs worked on at once (default: 8)")
    config.add_arguments(parser, "api_key", "batch_url", "api_timeout", "database_url", "transcripts_dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    with exit_on_bad_settings():
        settings = config.load(overrides=vars(args)).require("api_key")
        store = open_store(settings.database_url)
        transcripts = TranscriptStore(settings.transcripts_dir).ensure_directories()
    with SpeechmaticsAPI(settings.api_key or "", settings.batch_url, timeout=settings.api_timeout) as api:
        reconciler = Reconciler(store, api, transcripts, 0 if args.all else args.grace, args.concurrency)
        while True:
            summary = reconciler.run_pass()
            print_summary(summary)
            if not args.loop:
                return 1 if summary["failed"] else 0
            time.sleep(args.loop)


if __name__ == "__main__":
    sys.exit(main())
