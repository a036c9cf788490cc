"""Fault injection and traffic accounting: the seeded decisions, the rate limiter and the stats.

Every random choice comes from a ``random.Random`` seeded with the emulator seed plus what the
choice is about (a job id, a notification index, the n-th API request), never from a shared
generator, so the same seed replays the same faults whatever order threads happen to run in.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from emulator.options import EmulatorOptions


@dataclass(frozen=True)
class NotificationPlan:
    """What happens to one notification: dropped, or sent after ``delay`` (and again if duplicated)."""

    dropped: bool
    delay: float
    duplicate_delay: float | None


class Faults:
    """The current fault options (changeable at runtime) and the decisions drawn from them."""

    def __init__(self, options: EmulatorOptions, seed: int) -> None:
        self.seed = seed
        self._options = options
        self._lock = threading.Lock()
        self._api_calls = 0
        self._transcript_reads: Counter[tuple[str, str]] = Counter()

    @property
    def options(self) -> EmulatorOptions:
        return self._options

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply changes atomically (all or none) and return the new fault options."""
        with self._lock:
            self._options = self._options.with_faults(changes)
            return self._options.faults()

    def _rng(self, *topic: object) -> random.Random:
        return random.Random(":".join(str(part) for part in (self.seed, *topic)))

    def api_fault(self, request: str) -> int | None:
        """429, 503, 500 or None for the next API request (``"METHOD /v2/route"``), by the fractions.

        Every request draws, whether or not ``api_fault_routes`` lets the fault apply to it, so
        narrowing the routes never shifts the decisions of the requests that still match.
        """
        with self._lock:
            self._api_calls += 1
            number, options = self._api_calls, self._options
        roll = self._rng("api", number).random()
        if options.api_fault_routes and not any(
            fnmatch.fnmatchcase(request, pattern) for pattern in options.api_fault_routes
        ):
            return None
        if roll < options.api_429_fraction:
            return 429
        if roll < options.api_429_fraction + options.api_503_fraction:
            return 503
        if roll < options.api_429_fraction + options.api_503_fraction + options.api_500_fraction:
            return 500
        return None

    def create_then_fail(self, job_id: str) -> bool:
        """Whether the answer to the POST /v2/jobs that created ``job_id`` is replaced by a 503."""
        return self._rng("create_then_fail", job_id).random() < self._options.create_then_fail_fraction

    def transcript_fault(self, job_id: str, fmt: str = "json-v2") -> str | None:
        """"truncated", "empty" or None for the next ``fmt`` transcript read of a done job.

        Drawn from the job id, the format and how many times that format was read, so a retry of the
        same download gets a fresh decision, reads of one format never shift the faults of another,
        and the same seed replays the same sequence per job and format.
        """
        with self._lock:
            self._transcript_reads[job_id, fmt] += 1
            number, options = self._transcript_reads[job_id, fmt], self._options
        if fmt not in options.transcript_fault_formats:
            return None
        topic = ("transcript", job_id, number) if fmt == "json-v2" else ("transcript", job_id, fmt, number)
        roll = self._rng(*topic).random()
        if roll < options.truncate_transcript_fraction:
            return "truncated"
        if roll < options.truncate_transcript_fraction + options.empty_transcript_fraction:
            return "empty"
        return None

    def addons_fail(self, job_id: str) -> bool:
        """Whether the add-ons of a job that ends done all fail (their errors in the transcript metadata)."""
        return self._rng("addons", job_id).random() < self._options.addon_error_fraction

    def rejects(self, job_id: str, data_name: str) -> bool:
        """Whether a job is chosen to end rejected, by fraction or by a data_name glob."""
        options = self._options
        if any(fnmatch.fnmatchcase(data_name, pattern) for pattern in options.reject_data_names):
            return True
        return self._rng("reject", job_id).random() < options.reject_fraction

    def plan(self, job_id: str, index: int) -> NotificationPlan:
        """Drop / delay / duplicate decision for the notification to notification_config entry ``index``."""
        options, rng = self._options, self._rng("notify", job_id, index)
        dropped = rng.random() < options.drop_fraction
        duplicated = rng.random() < options.duplicate_fraction
        delay = rng.uniform(0, options.delay_max_seconds)
        # Half of the duplicates go out together with the original, the rest a little later.
        later = rng.random() < 0.5
        duplicate_delay = delay + (rng.uniform(0.05, 0.5) if later else 0.0)
        return NotificationPlan(dropped, delay, duplicate_delay if duplicated else None)


class Traffic:
    """Request counts, per-second peaks, injected errors and the sliding-window rate limiter."""

    WINDOW = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._events: Counter[str] = Counter()
        self._seen = {"get": deque(), "post_jobs": deque()}
        self._admitted = {"get": deque(), "post_jobs": deque()}
        self._peaks = {"get": 0, "post_jobs": 0}

    @staticmethod
    def kind(method: str, route: str) -> str | None:
        """The two documented limits: job creations and GETs (status requests)."""
        if method == "GET":
            return "get"
        if method == "POST" and route == "/v2/jobs":
            return "post_jobs"
        return None

    def record(self, method: str, route: str) -> None:
        """Count a request that reached the API, whatever its fate, and update the peak window."""
        kind, now = self.kind(method, route), time.monotonic()
        with self._lock:
            self._requests[f"{method} {route}"] += 1
            if kind:
                window = self._trim(self._seen[kind], now)
                window.append(now)
                self._peaks[kind] = max(self._peaks[kind], len(window))

    def admit(self, method: str, route: str, limits: dict[str, int]) -> bool:
        """Sliding 1 s window over admitted requests; a limit of 0 disables it."""
        kind = self.kind(method, route)
        if kind is None or not limits.get(kind):
            return True
        now = time.monotonic()
        with self._lock:
            window = self._trim(self._admitted[kind], now)
            if len(window) >= limits[kind]:
                self._events[f"rate_limited_{kind}"] += 1
                return False
            window.append(now)
            return True

    def _trim(self, window: deque, now: float) -> deque:
        while window and window[0] <= now - self.WINDOW:
            window.popleft()
        return window

    def count(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            limited_get = self._events["rate_limited_get"]
            limited_post = self._events["rate_limited_post_jobs"]
            return {
                "requests": dict(sorted(self._requests.items())),
                "injected_429": self._events["injected_429"],
                "injected_503": self._events["injected_503"],
                "injected_500": self._events["injected_500"],
                "rate_limited": limited_get + limited_post,
                "rate_limited_get": limited_get,
                "rate_limited_post_jobs": limited_post,
                "max_gets_per_second": self._peaks["get"],
                "max_posts_per_second": self._peaks["post_jobs"],
                "jobs_created": self._events["jobs_created"],
                "injected_create_then_fail": self._events["injected_create_then_fail"],
                "injected_truncated_transcript": self._events["injected_truncated_transcript"],
                "injected_empty_transcript": self._events["injected_empty_transcript"],
                "injected_addon_errors": self._events["injected_addon_errors"],
            }
