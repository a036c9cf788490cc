"""The emulated batch service: job lifecycle from submission to done/rejected, deletion and expiry.

A job is ``running`` from submission until ``processing_seconds`` after it was created (or until a
test finishes it through the control API); it then ends ``done`` with a transcript, or ``rejected``
when its media could not be fetched, retries included (notification status ``fetch_error``), is not
a recognised audio format (``error``), holds no audio (``trim_error``) or was picked by the reject
fault (``error``). Finishing starts the notifications. ``retention_seconds`` after creation the job
expires, its media and transcript are deleted, and the API answers 410 for it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from emulator import media, transcripts
from emulator.errors import ApiError
from emulator.faults import Faults, Traffic
from emulator.jobs import Failure, Job, JobTable, iso_micros, iso_millis
from emulator.notifications import TIMEOUT_TEXT, USER_AGENT, Notifier, describe, split_header
from emulator.options import EmulatorOptions
from emulator.scheduler import Scheduler

NOTIFY_STATUS_SUCCESS = "success"


class Service:
    """Owns the state of one emulator: jobs, faults, traffic stats, timers, notifier, upload dir."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
        self.faults = Faults(options, self.seed)
        self.traffic = Traffic()
        self.jobs = JobTable(self.seed)
        self.scheduler = Scheduler()
        self.notifier = Notifier(self.jobs, self.scheduler, self.faults)
        self.upload_dir = Path(tempfile.mkdtemp(prefix="emulator-uploads-", dir=options.upload_dir))

    def close(self) -> None:
        """Stop timers and workers, release waiters, delete every stored upload."""
        self.jobs.close()
        self.scheduler.stop()
        shutil.rmtree(self.upload_dir, ignore_errors=True)

    # --- submission -------------------------------------------------------------------------------

    def submit(self, config: dict[str, Any], data_name: str, data_path: Path | None) -> str:
        """Create a running job from an upload (``data_path``) or a ``fetch_data`` URL; returns its id."""
        job = self.jobs.create(config, data_name, data_path)
        self.traffic.count("jobs_created")
        if data_path is None:
            self.scheduler.run_now(self._fetch, job.id)
        else:
            self._media_ready(job.id, data_path)
        self.scheduler.call_later(self.options.retention_seconds, self.expire_if_due, job.id)
        return job.id

    def _media_ready(self, job_id: str, path: Path) -> None:
        """Classify the media, decide the job's fate, and start its processing timer."""
        info = media.inspect(path)
        failure = _media_failure(info)
        data_name = self.jobs.read(job_id, lambda job: job.data_name)
        if failure is None and self.faults.rejects(job_id, data_name):
            failure = Failure("error", "Job rejected by the emulator's reject fault")

        def attach(job: Job) -> bool:
            if job.status != "running":
                return False
            job.data_path, job.media, job.failure = path, info, failure
            return True

        if not self.jobs.update(job_id, attach):
            path.unlink(missing_ok=True)
            return
        self._schedule_finish(job_id)

    def _schedule_finish(self, job_id: str) -> None:
        created = self.jobs.read(job_id, lambda job: job.created_ts)
        remaining = created + self.options.processing_seconds - time.time()
        self.scheduler.call_later(remaining, self.complete, job_id, None)

    def _fetch(self, job_id: str, number: int = 1) -> None:
        """Download ``fetch_data.url`` into the upload dir, retrying as the service does.

        Every failed attempt is appended to the job's ``errors`` at once (the job is still running);
        the next follows after the matching ``fetch_retry_delays`` entry, and when they are used up
        the job is rejected as ``fetch_error``. A file over the size cap is not retried: it would
        only be too large again.
        """
        running, fetch = self.jobs.read(job_id, lambda job: (job.status == "running", job.config["fetch_data"]))
        if not running:
            return  # deleted while a retry was waiting
        path = self.upload_dir / f"fetch-{job_id}"
        try:
            message, final = self._download(fetch, path)
        except requests.Timeout:
            message, final = f'Audio fetch error: Get "{fetch["url"]}": {TIMEOUT_TEXT}', False
        except requests.RequestException as exc:
            message, final = f'Audio fetch error: Get "{fetch["url"]}": {describe(exc)}', False
        if message is None:
            self._media_ready(job_id, path)
            return
        path.unlink(missing_ok=True)
        if not self.jobs.update(job_id, lambda job: _record_error(job, message)):
            return
        delays = self.options.fetch_retry_delays
        if not final and number <= len(delays):
            self.scheduler.call_later(delays[number - 1], self._fetch, job_id, number + 1)
            return
        failure = Failure("fetch_error", message, recorded=True)
        self.jobs.update(job_id, lambda job: setattr(job, "failure", failure))
        self._schedule_finish(job_id)

    def _download(self, fetch: dict[str, Any], path: Path) -> tuple[str | None, bool]:
        """Stream the media to disk under the size cap: (error message or None, whether retrying is futile)."""
        headers = {"User-Agent": USER_AGENT, **dict(map(split_header, fetch.get("auth_headers") or []))}
        timeout = self.options.fetch_timeout
        with requests.Session() as session:
            session.trust_env = False
            with session.get(fetch["url"], headers=headers, timeout=timeout, stream=True) as response:
                if not 200 <= response.status_code < 300:
                    return f"Audio fetch error, http status {response.status_code}", False
                size = 0
                with path.open("wb") as target:
                    for chunk in response.iter_content(1 << 16):
                        size += len(chunk)
                        if size > self.options.max_upload_bytes:
                            return f"Audio fetch error, file exceeds {self.options.max_upload_bytes} bytes", True
                        target.write(chunk)
        return None, False

    # --- finishing ----------------------------------------------------------------------------------

    def complete(self, job_id: str, forced: str | None) -> bool:
        """Finish a running job (``forced`` = "done"/"rejected" overrides its natural outcome).

        The transcript is rendered outside the lock; whoever commits first (timer or control call)
        wins, so a job finishes and notifies exactly once. Returns False if it was not running.
        """
        snapshot = self.jobs.read(job_id, lambda job: (job.status, job.failure, job.media, job.data_path))
        status, failure, info, path = snapshot
        if status != "running":
            return False
        if forced == "done":
            failure = None
        elif forced == "rejected" and failure is None:
            failure = Failure("error", "Job rejected through the emulator control API")
        transcript = None if failure else self._render(job_id, info, path)

        def commit(job: Job) -> list[dict[str, Any]] | None:
            if job.status != "running":
                return None
            job.status = "rejected" if failure else "done"
            job.billable = failure is None
            job.transcript, job.failure = transcript, failure
            if failure and not failure.recorded:
                job.errors.append({"message": failure.message, "timestamp": iso_millis(time.time())})
            return list(job.config.get("notification_config") or [])

        entries = self.jobs.update(job_id, commit)
        if entries is None:
            return False
        if transcript and transcripts.ADDON_ERROR_KEYS & transcript["metadata"].keys():
            self.traffic.count("injected_addon_errors")  # counted once committed: a losing render is not
        notify_status = failure.notify_status if failure else NOTIFY_STATUS_SUCCESS
        self.notifier.job_finished(job_id, notify_status, entries)
        return True

    def _render(self, job_id: str, info: media.MediaInfo | None, path: Path | None) -> dict[str, Any]:
        audio_hash = media.fingerprint(path) if path and path.exists() else media.EMPTY_SHA256
        job_info, config = self.jobs.read(job_id, lambda job: (job.info(), job.config))
        seconds, channels = (info.seconds, info.channels) if info else (0.0, 1)
        seed = transcripts.seed_for(audio_hash, config)
        document = transcripts.build_json_v2(job_info, config, seconds, channels, seed, iso_micros(time.time()))
        failed_addons = transcripts.addon_errors(config)
        if failed_addons and self.faults.addons_fail(job_id):
            document["metadata"].update(failed_addons)
        return document

    # --- deletion and expiry ------------------------------------------------------------------------

    def expire_if_due(self, job_id: str) -> None:
        created = self.jobs.read(job_id, lambda job: job.created_ts)
        if time.time() >= created + self.options.retention_seconds:
            self.expire(job_id)

    def expire(self, job_id: str) -> None:
        """The system deletes the job: media and transcript go, the API answers 410 from now on."""
        self._discard(job_id, "expired")

    def delete(self, job_id: str, force: bool) -> dict[str, Any]:
        """DELETE /v2/jobs/{id}: 423 for a running job unless forced; no notification either way."""
        self.expire_if_due(job_id)

        def check(job: Job) -> None:
            if job.status == "expired":
                raise ApiError(410, "Job Expired")
            if job.status == "running" and not force:
                raise ApiError(423, "Resource Locked", "The job is running; use force=true to delete it")

        return self._discard(job_id, "deleted", check)

    def _discard(self, job_id: str, status: str, check: Callable[[Job], None] | None = None) -> dict[str, Any]:
        """Move the job to ``status`` (checked atomically first) and delete its media and transcript."""

        def change(job: Job) -> tuple[dict[str, Any], Path | None]:
            if check:
                check(job)
            path, job.data_path, job.transcript = job.data_path, None, None
            if job.status != "expired":
                job.status = status
            return job.details(), path

        details, path = self.jobs.update(job_id, change)
        if path:
            path.unlink(missing_ok=True)
        return details

    def expire_due_jobs(self) -> None:
        """Catch up on expiry before listing, in case the clock passed a job's retention just now."""
        for job_id, status in self.jobs.collect(lambda job: (job.id, job.status)):
            if status != "expired":
                self.expire_if_due(job_id)


def _record_error(job: Job, message: str) -> bool:
    """Append a failed attempt to a running job's errors; False once it ended (e.g. force-deleted)."""
    if job.status != "running":
        return False
    job.errors.append({"message": message, "timestamp": iso_millis(time.time())})
    return True


def _media_failure(info: media.MediaInfo) -> Failure | None:
    if info.kind is None:
        return Failure("error", "Job rejected due to invalid audio: the media format could not be recognised")
    if info.seconds <= 0:
        return Failure("trim_error", "Job rejected due to invalid audio: the media file contains no audio")
    return None
