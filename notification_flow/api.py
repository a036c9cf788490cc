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
from datetime import datetime
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
THROTTLED = (429, 503)


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
    def __init__(self, api_key: str, batch_url: str, *, timeout: float = 30.0, attempts: int = 5,
                 reads_per_second: float = READS_PER_SECOND,
                 submits_per_second: float = SUBMITS_PER_SECOND) -> None:
        self.sdk = BatchClient(ConnectionSettings(url=batch_url, auth_token=api_key)).connect()
        self.http: httpx.Client = self.sdk.api_client
        self.http.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.attempts = attempts
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
    def submit(self, audio: Path, config: dict[str, Any], heartbeat: Callable[[], None] | None = None) -> str:
        """Create a job; raises AmbiguousSubmission when it cannot tell whether one was created.
        `heartbeat` is called every half minute or so while a long upload is still going."""

        def request() -> httpx.Response:
            with audio.open("rb") as data:
                upload = _ReportingReader(data, heartbeat) if heartbeat else data
                return self.http.post("jobs", data={"config": json.dumps(config)},
                                      files={"data_file": (audio.name, upload)})

        return self._call(request, self.submits, idempotent=False).json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call(lambda: self.http.get(f"jobs/{job_id}"), self.reads).json()["job"]

    def jobs_page(self, limit: int = 100, created_before: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "include_deleted": "true"}
        if created_before:
            params["created_before"] = created_before
        return self._call(lambda: self.http.get("jobs", params=params), self.reads).json()["jobs"]

    def recent_jobs(self, since: float) -> Iterator[dict[str, Any]]:
        """Every job created at or after `since` (epoch seconds), newest first, one page of 100 per call."""
        created_before = None
        while True:
            page = self.jobs_page(created_before=created_before)
            yield from page
            if len(page) < 100 or created_at(page[-1]) < since:
                return
            created_before = page[-1]["created_at"]

    def download_transcript(self, job_id: str, target: IncomingFile) -> None:
        """Stream the json-v2 transcript into `target`, so memory stays flat however long it is."""

        def request() -> httpx.Response:
            target.file.seek(0)
            target.file.truncate()
            target.size = 0
            with self.http.stream("GET", f"jobs/{job_id}/transcript", params={"format": "json-v2"}) as response:
                if response.status_code == 200:
                    for chunk in response.iter_bytes(1 << 16):
                        target.write(chunk)
                else:
                    response.read()
                return response

        self._call(request, self.reads)

    # -- retries --------------------------------------------------------------------------------------
    def _call(self, request: Callable[[], httpx.Response], limiter: RateLimiter,
              idempotent: bool = True) -> httpx.Response:
        last_problem = "no attempt made"
        for attempt in range(1, self.attempts + 1):
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
                if response.status_code < 400:
                    return response
                if response.status_code not in THROTTLED and (response.status_code < 500 or not idempotent):
                    raise _error_for(response, idempotent)
                last_problem = f"HTTP {response.status_code} {_error_text(response)}"
                retry_after = _retry_after_seconds(response)
            if attempt < self.attempts:
                time.sleep(backoff(attempt, retry_after))
        raise ApiError(f"gave up after {self.attempts} attempts: {last_problem}")


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
    return datetime.fromisoformat(job["created_at"].replace("Z", "+00:00")).timestamp()


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
