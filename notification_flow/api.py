"""The one module that talks to Speechmatics: every call has a timeout, a bounded number of retries with
jittered backoff, respects 429 and Retry-After, and stays under the documented rate limits.

It uses speechmatics-python for what that SDK owns (the key saved by `speechmatics config set`, URL
normalisation, its HTTP client and headers) but sends requests itself, because the SDK's calls have no
timeout and would retry a job submission after a protocol error, which can create a second, billed job.
"""

from __future__ import annotations

import json
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from speechmatics.batch_client import BatchClient
    from speechmatics.models import ConnectionSettings

from notification_flow.storage import IncomingFile

# Documented limits (docs: batch/limits): 10 job creations and 50 status requests per second.
# We aim a little below them, because requests sent evenly can still arrive bunched.
SUBMITS_PER_SECOND = 9.5
READS_PER_SECOND = 48
CERTAINLY_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
PAGE_SIZE = 100  # the most GET /v2/jobs returns at once
Heartbeat = Callable[[], None]


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


class RateLimiter:
    """At most `per_second` calls in any one-second window, shared by every thread of this process."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        time.sleep(max(0.0, slot - now))


class SpeechmaticsAPI:
    def __init__(self, api_key: str, batch_url: str, *, timeout: float = 30.0, attempts: int = 6,
                 max_wait: float = 120.0, reads_per_second: float = READS_PER_SECOND,
                 submits_per_second: float = SUBMITS_PER_SECOND) -> None:
        """`attempts` bounds the tries of one call; `max_wait` is the longest pause between them (a longer
        Retry-After ends the call at once: a webhook handler, say, must never sit out a rate limit)."""
        self.sdk = BatchClient(ConnectionSettings(url=batch_url, auth_token=api_key)).connect()
        self.http: httpx.Client = self.sdk.api_client
        self.http.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.download_seconds = timeout * 10
        self.attempts = attempts
        self.max_wait = max_wait
        self.reads = RateLimiter(reads_per_second)
        self.submits = RateLimiter(submits_per_second)
        self.calls = 0

    def close(self) -> None:
        self.sdk.close()

    def __enter__(self) -> SpeechmaticsAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------------------
    def submit(self, audio: Path, config: dict[str, Any], heartbeat: Heartbeat | None = None) -> str:
        """Create a job, exactly once. `heartbeat` is called at least every half minute while we upload or
        wait, so the row's owner is seen to be alive; it may raise to abandon the submission.

        Speechmatics has no idempotency key, but our reference travels in `tracking.reference`: after an
        answered 5xx we look for a job carrying it before trying again. A request that got no answer at all
        may still be running there, so that raises AmbiguousSubmission and cronjob.py decides later."""
        reference = (config.get("tracking") or {}).get("reference")

        def request() -> httpx.Response:
            with audio.open("rb") as data:
                upload = _ReportingReader(data, heartbeat) if heartbeat else data
                return self.http.post("jobs", data={"config": json.dumps(config)},
                                      files={"data_file": (audio.name, upload)})

        for attempt in range(1, self.attempts + 1):
            try:
                return self._call(request, self.submits, idempotent=False, heartbeat=heartbeat).json()["id"]
            except AmbiguousSubmission as error:
                if error.status is None or not reference:
                    raise  # no answer: the request may still be running there
                try:
                    existing = self.find_reference(reference)
                except ApiError:
                    raise error from None  # cannot look: still ambiguous
                if existing:
                    return existing
                if attempt == self.attempts:  # answered, and certainly no job: a plain failure
                    raise ApiError(f"gave up after {attempt} attempts: {error}", error.status) from error
                self._sleep(backoff(attempt), heartbeat)
        raise AssertionError("unreachable")

    def find_reference(self, reference: str, pages: int = 2) -> str | None:
        """The id of a recent job carrying our reference, if Speechmatics has one."""
        for seen, item in enumerate(self.recent_jobs(since=0.0), start=1):
            if ((item.get("config") or {}).get("tracking") or {}).get("reference") == reference:
                return item["id"]
            if seen >= pages * PAGE_SIZE:
                return None
        return None

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call(lambda: self.http.get(f"jobs/{job_id}"), self.reads).json()["job"]

    def jobs_page(self, created_before: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": PAGE_SIZE, "include_deleted": "true"}
        if created_before:
            params["created_before"] = created_before
        return self._call(lambda: self.http.get("jobs", params=params), self.reads).json()["jobs"]

    def recent_jobs(self, since: float) -> Iterator[dict[str, Any]]:
        """Every job created at or after `since` (epoch seconds), newest first, once each.

        Pages overlap by a millisecond, because `created_at` has millisecond precision and several jobs
        can share the boundary value: whether the cursor is inclusive or not, none is skipped."""
        seen: set[str] = set()
        cursor = None
        while True:
            page = self.jobs_page(created_before=cursor)
            new = [item for item in page if item["id"] not in seen]
            seen.update(item["id"] for item in new)
            yield from new
            if len(page) < PAGE_SIZE or not new or created_at(page[-1]) < since:
                return
            cursor = _one_millisecond_later(page[-1]["created_at"])

    def download_transcript(self, job_id: str, target: IncomingFile) -> None:
        """Stream the json-v2 transcript into `target`, so memory stays flat however long it is, within
        an overall deadline: per-read timeouts alone would let a trickling download run forever."""

        def request() -> httpx.Response:
            target.file.seek(0)
            target.file.truncate()
            target.size = 0
            deadline = time.monotonic() + self.download_seconds
            with self.http.stream("GET", f"jobs/{job_id}/transcript", params={"format": "json-v2"}) as response:
                if response.status_code != 200:
                    response.read()
                    return response
                for chunk in response.iter_bytes(1 << 16):
                    target.write(chunk)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout(f"download took longer than {self.download_seconds:.0f}s")
                return response

        self._call(request, self.reads)

    # -- retries --------------------------------------------------------------------------------------
    def _call(self, request: Callable[[], httpx.Response], limiter: RateLimiter, idempotent: bool = True,
              heartbeat: Heartbeat | None = None) -> httpx.Response:
        last_problem = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            if heartbeat:
                heartbeat()
            limiter.wait()
            self.calls += 1
            try:
                response = request()
            except CERTAINLY_NOT_SENT as error:
                last_problem, retry_after = f"cannot connect: {error}", None
            except httpx.TransportError as error:
                if not idempotent:
                    raise AmbiguousSubmission(f"no answer from Speechmatics ({type(error).__name__}); "
                                              "the job may exist") from error
                last_problem, retry_after = f"{type(error).__name__}: {error}", None
            else:
                status = response.status_code
                if status < 400:
                    return response
                if not (status == 429 or (status >= 500 and idempotent)):
                    raise _error_for(response, idempotent)
                last_problem = f"HTTP {status} {_error_text(response)}"
                retry_after = _retry_after_seconds(response)
            delay = backoff(attempt, retry_after)
            if attempt == self.attempts or delay > self.max_wait:
                break
            self._sleep(delay, heartbeat)
        raise ApiError(f"gave up after {attempt} attempt{'s' * (attempt > 1)}: {last_problem}")

    @staticmethod
    def _sleep(seconds: float, heartbeat: Heartbeat | None) -> None:
        """Sleep, in slices short enough to keep the heartbeat going."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 10.0))
            if heartbeat and left > 10.0:
                heartbeat()


class _ReportingReader:
    """A file wrapper that calls `heartbeat` at most every `every` seconds while it is being read."""

    def __init__(self, file: Any, heartbeat: Callable[[], None], every: float = 30.0) -> None:
        self.file, self.heartbeat, self.every = file, heartbeat, every
        self.last = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() - self.last > self.every:
            self.heartbeat()
            self.last = time.monotonic()
        return self.file.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def backoff(attempt: int, retry_after: float | None = None, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(delay, min(retry_after, 120.0)) if retry_after is not None else delay


def created_at(job: dict[str, Any]) -> float:
    return _parse_time(job["created_at"]).timestamp()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _one_millisecond_later(value: str) -> str:
    later = _parse_time(value) + timedelta(milliseconds=1)
    return later.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{later.microsecond // 1000:03d}Z"


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return " - ".join(str(body[k]) for k in ("error", "detail") if body.get(k))
    except (ValueError, AttributeError):
        return response.text[:200].strip()


def _error_for(response: httpx.Response, idempotent: bool) -> ApiError:
    status, text = response.status_code, _error_text(response)
    if status in (401, 403):
        return Unauthorized(f"Speechmatics refused the API key (HTTP {status}): check SPEECHMATICS_API_KEY "
                            "or `speechmatics config set --auth-token`", status)
    if status == 404:
        return JobNotFound(f"not found (HTTP 404) {text}".strip(), status)
    if status == 410:
        return JobGone(f"expired (HTTP 410) {text}".strip(), status)
    if status >= 500 and not idempotent:
        return AmbiguousSubmission(f"HTTP {status} {text}; the job may exist".strip(), status)
    return ApiError(f"HTTP {status} {text}".strip(), status)
