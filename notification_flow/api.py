"""The one module that talks to Speechmatics: every call has a timeout, one bounded budget of tries with jittered
backoff (`retry.RetryPolicy`), respects 429 and Retry-After, and stays under the documented rate limits.

It sends requests with httpx itself rather than through speechmatics-python's BatchClient, whose calls have
no timeout and would retry a job submission after a protocol error, which can create a second, billed job.
speechmatics-python still owns the API key saved by `speechmatics config set` (see settings.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx

from notification_flow.retry import Budget, GaveUp, RetryPolicy, retry_after_seconds

# Documented limits (docs: batch/limits): 10 job creations and 50 status requests per second. We stay a
# little below them: requests started evenly can still arrive bunched.
SUBMITS_PER_SECOND = 9.5
READS_PER_SECOND = 48
PAGE_SIZE = 100  # the most GET /v2/jobs returns at once
RETENTION_SECONDS = 7 * 86400  # Speechmatics deletes a job's data a week after it was created
HEARTBEAT_SECONDS = 30  # a submitting client shows it is alive at least this often while it uploads
CERTAINLY_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# What Speechmatics appends to a job's `errors` when it could not deliver a notification.
NOTIFICATION_ERRORS = ("Error in sending notification", "unable to send notification", "Sending notification failed")
Heartbeat = Callable[[], None]


class Download(Protocol):
    """Where a download goes: any binary file that can be emptied for another try."""

    def write(self, chunk: bytes, /) -> object: ...
    def restart(self) -> None: ...


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(ApiError):
    """401 or 403: the API key is wrong, expired or lacks the feature."""


class JobNotFound(ApiError):
    """404: no such job for this key (or, for a transcript, not ready yet)."""


class JobGone(ApiError):
    """410: the job outlived Speechmatics' retention and its data was deleted."""


class AmbiguousSubmission(ApiError):
    """The request may have reached Speechmatics: a job may or may not exist. Never resubmit blindly."""


class _Retryable(Exception):
    """One try failed in a way another try may not: throttled, unavailable, or never sent."""

    def __init__(self, problem: str, retry_after: float | None = None, answered: bool = False) -> None:
        super().__init__(problem)
        self.retry_after = retry_after
        self.answered = answered


class RateLimiter:
    """At most `per_second` calls (rounded up) in any one-second window, shared by every thread of this process.

    Calls start evenly spaced, each at least 1/`per_second` after the previous one really started: the wait
    is taken under the lock and the next start counted from the end of it, so a thread that was late to
    start never bunches with punctual ones. Even spacing, not bursts up to the limit, because requests
    started together can arrive in the service's next second together with the following ones."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval, self.next_start = 1.0 / per_second, float("-inf")
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:  # held while waiting: the callers queue up in order
            while (left := self.next_start - self.clock()) > 0:
                self.sleep(left)
            self.next_start = self.clock() + self.interval


class SpeechmaticsAPI:
    def __init__(self, api_key: str, batch_url: str, *, timeout: float = 30.0, retry: RetryPolicy | None = None,
                 reads_per_second: float = READS_PER_SECOND, submits_per_second: float = SUBMITS_PER_SECOND,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`transport` replaces the network, for tests that answer in-process."""
        base = batch_url.rstrip("/")
        self.http = httpx.Client(base_url=base if base.endswith("/v2") else f"{base}/v2",
                                 headers={"Authorization": f"Bearer {api_key}", "Accept-Charset": "utf-8"},
                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport)
        self.download_seconds = timeout * 10
        self.retry = retry or RetryPolicy()
        self.reads = RateLimiter(reads_per_second)
        self.submits = RateLimiter(submits_per_second)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SpeechmaticsAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------------------
    def submit(self, audio: Path | None, job_config: dict[str, Any], heartbeat: Heartbeat | None = None) -> str:
        """Create a job, and never a second one that the listing could have shown. With no `audio`, the config's
        `fetch_data` names it and Speechmatics fetches it (sources.py). `heartbeat` runs before
        every try and every HEARTBEAT_SECONDS of the upload, so the row's owner is seen to be alive; if it
        raises, the upload stops.

        Speechmatics has no idempotency key, but our reference travels in `tracking.reference`: after an
        answered 5xx we look for a job carrying it before trying again, within the same budget of tries.
        A request that got no answer may still be running there, and a 5xx may have come after the job
        was made: either raises AmbiguousSubmission (the latter once the budget is spent), and cronjob.py
        decides later. Only a submission that was never answered with a 5xx can end in a plain failure."""
        reference = (job_config.get("tracking") or {}).get("reference")
        budget = self.retry.budget(heartbeat)

        def post() -> httpx.Response:
            if audio is None:  # still multipart/form-data, as the API requires, with the config alone
                return self.http.post("jobs", files={"config": (None, json.dumps(job_config))})
            with audio.open("rb") as data:
                return self.http.post("jobs", data={"config": json.dumps(job_config)},
                                      files={"data_file": (audio.name, _BeatingFile(data, heartbeat))})

        maybe_created = False
        while True:
            if heartbeat:
                heartbeat()  # before the rate limiter's slot, so a slow database never bunches our requests
            try:
                return _job_id(self._try(post, self.submits, idempotent=False))
            except _Retryable as problem:
                if problem.answered and reference:  # a 5xx: the job may exist anyway
                    maybe_created = True
                    existing = self._find_reference(reference, budget, problem)
                    if existing:
                        return existing
                try:
                    self._spend(budget, problem)
                except ApiError as error:
                    if maybe_created:
                        raise AmbiguousSubmission(f"{error}; a job may have been created all the same",
                                                  error.status) from None
                    raise

    def _find_reference(self, reference: str, budget: Budget, answered: _Retryable, pages: int = 2) -> str | None:
        """The id of a recent job carrying our reference, if the listing shows one; a listing we cannot
        read leaves the submission ambiguous."""
        try:
            for seen, item in enumerate(self.recent_jobs(since=0.0, budget=budget), start=1):
                if reference_of(item) == reference:
                    return item["id"]
                if seen >= pages * PAGE_SIZE:
                    break
        except ApiError:
            raise AmbiguousSubmission(f"{answered}; the job may exist", 503) from None
        return None

    def check_access(self) -> None:
        """One authenticated read (the newest job, whatever it holds): ApiError if the key is refused or the
        API cannot be reached, however well the rest of a pass would have gone without it."""
        self._call(lambda: self.http.get("jobs", params={"limit": 1}), self.reads)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's details, answered at once (`wait=0`) even while it runs."""
        return self._json(self._call(lambda: self.http.get(f"jobs/{job_id}", params={"wait": 0}), self.reads), "job")

    def jobs_page(self, created_before: str | None = None, budget: Budget | None = None) -> list[dict[str, Any]]:
        """One page of the listing, newest first; a page whose jobs lack an id or a creation time is an
        ApiError, so no caller ever trips over a malformed answer."""
        params: dict[str, Any] = {"limit": PAGE_SIZE, "include_deleted": "true"}
        if created_before:
            params["created_before"] = created_before
        page = self._json(self._call(lambda: self.http.get("jobs", params=params), self.reads, budget), "jobs")
        if not isinstance(page, list) or not all(_well_formed(item) for item in page):
            raise ApiError("Speechmatics answered a listing whose jobs lack an id or a creation time")
        return page

    def recent_jobs(self, since: float, budget: Budget | None = None) -> Iterator[dict[str, Any]]:
        """Every job created at or after `since` (epoch seconds), newest first, once each.

        Pages overlap by a millisecond, because `created_at` has millisecond precision and several jobs
        can share the boundary value: whether the cursor is inclusive or not, none is skipped."""
        seen: set[str] = set()
        cursor = None
        while True:
            page = self.jobs_page(created_before=cursor, budget=budget)
            new = [item for item in page if item["id"] not in seen]
            seen.update(item["id"] for item in new)
            yield from new
            if len(page) < PAGE_SIZE or not new or created_at(page[-1]) < since:
                return
            cursor = _one_millisecond_later(page[-1]["created_at"])

    def delete_job(self, job_id: str, force: bool = False) -> bool:
        """Delete the job and its data at Speechmatics; False if it was already gone (404 or 410). A running job
        is refused (423, an ApiError) unless `force`. Deleting twice deletes once, so the call is retried."""
        params = {"force": "true"} if force else {}
        try:
            self._call(lambda: self.http.delete(f"jobs/{job_id}", params=params), self.reads)
        except (JobNotFound, JobGone):
            return False
        return True

    def download_transcript(self, job_id: str, target: Download, fmt: str = "json-v2") -> None:
        """Stream the transcript (json-v2, or txt or srt for formats.py) into `target`, so memory stays flat
        however long it is, within an overall deadline: per-read timeouts alone would let a trickling download
        run forever."""

        def request() -> httpx.Response:
            target.restart()
            deadline = time.monotonic() + self.download_seconds
            params = {"format": fmt, "wait": 0}
            with self.http.stream("GET", f"jobs/{job_id}/transcript", params=params) as response:
                if response.status_code != 200:
                    response.read()
                    return response
                for chunk in response.iter_bytes():  # as each read arrives, so a trickle meets the deadline
                    target.write(chunk)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout(f"download took longer than {self.download_seconds:.0f}s")
                return response

        self._call(request, self.reads)

    # -- tries ----------------------------------------------------------------------------------------
    def _call(self, request: Callable[[], httpx.Response], limiter: RateLimiter,
              budget: Budget | None = None) -> httpx.Response:
        """An idempotent call: tried again, within the budget, after whatever failed."""
        budget = budget or self.retry.budget()
        while True:
            try:
                return self._try(request, limiter, idempotent=True)
            except _Retryable as problem:
                self._spend(budget, problem)

    @staticmethod
    def _spend(budget: Budget, problem: _Retryable) -> None:
        try:
            budget.spend(str(problem), problem.retry_after)
        except GaveUp as error:
            raise ApiError(str(error), 503 if problem.answered else None) from None

    def _try(self, request: Callable[[], httpx.Response], limiter: RateLimiter, idempotent: bool) -> httpx.Response:
        """One request: its answer, a final ApiError, or _Retryable when another try may do better."""
        limiter.wait()
        try:
            response = request()
        except CERTAINLY_NOT_SENT as error:
            raise _Retryable(f"cannot connect: {error}") from error
        except httpx.RequestError as error:  # sent, but no answer we could read
            if not idempotent:
                raise AmbiguousSubmission(f"no answer from Speechmatics ({type(error).__name__}); "
                                          "the job may exist") from error
            raise _Retryable(f"{type(error).__name__}: {error}") from error
        status = response.status_code
        if status < 400:
            return response
        if status == 429:
            raise _Retryable(f"HTTP 429 {_error_text(response)}", retry_after_seconds(response.headers.get(
                "Retry-After")))
        if status >= 500:
            raise _Retryable(f"HTTP {status} {_error_text(response)}".strip(),
                             retry_after_seconds(response.headers.get("Retry-After")), answered=True)
        raise _error_for(response)

    @staticmethod
    def _json(response: httpx.Response, key: str) -> Any:
        """The answer's `key`: an answer without it, or not JSON at all, is an ApiError like any other."""
        try:
            return response.json()[key]
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"Speechmatics answered HTTP {response.status_code} without the expected {key!r}",
                           response.status_code) from None


class _BeatingFile:
    """The audio file as the upload reads it: every HEARTBEAT_SECONDS of reading, `heartbeat` runs, so the row
    is seen alive while the audio goes out, and if it raises (the row was closed) the upload stops there. After
    the last read, the rest of the body and the answer each take at most the API timeout, which the
    reconciler's judgement of a silent row allows for."""

    def __init__(self, file: BinaryIO, heartbeat: Heartbeat | None) -> None:
        self.file, self.heartbeat, self.beaten = file, heartbeat, time.monotonic()

    def read(self, size: int = -1) -> bytes:
        if self.heartbeat and time.monotonic() - self.beaten >= HEARTBEAT_SECONDS:
            self.heartbeat()
            self.beaten = time.monotonic()
        return self.file.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def _job_id(created: httpx.Response) -> str:
    """The id in a creation's answer; a 2xx whose body names none still means the job may exist."""
    try:
        job_id = created.json()["id"]
    except (ValueError, KeyError, TypeError):
        job_id = None
    if not isinstance(job_id, str) or not job_id:
        raise AmbiguousSubmission(f"Speechmatics answered HTTP {created.status_code} without a job id; the job "
                                  "may exist", created.status_code)
    return job_id


def _well_formed(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return False
    try:
        created_at(item)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return True


def rejection_reason(job: Any) -> str | None:
    """Why Speechmatics rejected a job: the first of its `errors` that is not about delivering a notification
    (the service appends those after the real reason when the rejection's notification fails too)."""
    errors = job.get("errors") if isinstance(job, dict) else None
    for error in errors if isinstance(errors, list) else []:
        message = error.get("message") if isinstance(error, dict) else None
        if message and not message.startswith(NOTIFICATION_ERRORS):
            return str(message)
    return None


def created_at(job: dict[str, Any]) -> float:
    return _parse_time(job["created_at"]).timestamp()


def reference_of(job: dict[str, Any]) -> str | None:
    """Our reference, from the `tracking` of a job's config as the API shows it; None unless it is a string
    (another tool on the account may put anything there, and its jobs are not ours)."""
    config = job.get("config")
    tracking = config.get("tracking") if isinstance(config, dict) else None
    reference = tracking.get("reference") if isinstance(tracking, dict) else None
    return reference if isinstance(reference, str) else None


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _one_millisecond_later(value: str) -> str:
    later = _parse_time(value) + timedelta(milliseconds=1)
    return later.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{later.microsecond // 1000:03d}Z"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return " - ".join(str(body[k]) for k in ("error", "detail") if body.get(k))
    except (ValueError, AttributeError):
        return response.text[:200].strip()


def _error_for(response: httpx.Response) -> ApiError:
    status, text = response.status_code, _error_text(response)
    if status in (401, 403):
        return Unauthorized(f"Speechmatics refused the API key (HTTP {status}): check SPEECHMATICS_API_KEY "
                            "or `speechmatics config set --auth-token`", status)
    if status == 404:
        return JobNotFound(f"not found (HTTP 404) {text}".strip(), status)
    if status == 410:
        return JobGone(f"expired (HTTP 410) {text}".strip(), status)
    return ApiError(f"HTTP {status} {text}".strip(), status)
