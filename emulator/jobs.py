"""In-memory job records behind one lock, and the views the API gives of them.

Only this module touches job fields; background threads (processing timers, fetches, notification
senders) and request threads all go through ``JobTable`` methods, which hold the lock for the
duration of a read or a state change. A condition variable on the same lock lets ``?wait=`` requests
sleep until a job reaches a terminal state.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.media import MediaInfo

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TERMINAL = frozenset({"done", "rejected", "deleted", "expired"})


def iso_millis(timestamp: float) -> str:
    """API timestamps: UTC, millisecond precision, ``Z`` suffix (e.g. 2023-02-22T14:33:02.221Z)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_micros(timestamp: float) -> str:
    """Transcript metadata timestamps carry microseconds, as in real json-v2 output."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Failure:
    """Why a job will end (or ended) rejected: the notification status and the job.errors message.

    ``recorded``: the message is already in job.errors (each failed fetch attempt is added as it happens).
    """

    notify_status: str
    message: str
    recorded: bool = False


@dataclass
class Job:
    id: str
    created_ts: float
    config: dict[str, Any]
    data_name: str
    data_path: Path | None = None
    media: MediaInfo | None = None
    failure: Failure | None = None
    status: str = "running"
    errors: list[dict[str, str]] = field(default_factory=list)
    transcript: dict[str, Any] | None = None
    billable: bool = False  # reached done once; usage keeps counting it after deletion

    @property
    def created_at(self) -> str:
        return iso_millis(self.created_ts)

    @property
    def duration(self) -> int:
        return self.media.duration if self.media else 0

    def info(self) -> dict[str, Any]:
        """JobInfo: the ``job`` block of a transcript and the ``jobinfo`` notification item."""
        info: dict[str, Any] = {
            "created_at": self.created_at,
            "data_name": self.data_name,
            "duration": self.duration,
            "id": self.id,
        }
        if "tracking" in self.config:
            info["tracking"] = self.config["tracking"]
        return info

    def details(self) -> dict[str, Any]:
        """JobDetails as GET /v2/jobs/{id} shows it; ``errors`` is omitted while empty, as the API does."""
        details = {**self.info(), "status": self.status, "config": self.config}
        details.pop("tracking", None)
        if self.errors:
            details["errors"] = [dict(error) for error in self.errors]
        return details


class JobTable:
    """The in-memory table of one emulator's jobs, newest last, with a lock and a condition for waiters."""

    def __init__(self, seed: int) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = random.Random(f"{seed}:ids")
        self._last_created_ms = 0
        self._closing = False

    def create(self, config: dict[str, Any], data_name: str, data_path: Path | None) -> Job:
        """New running job; creation times strictly increase so ``created_before`` paging never skips."""
        with self._lock:
            job_id = self._new_id()
            millis = max(int(time.time() * 1000), self._last_created_ms + 1)
            self._last_created_ms = millis
            job = Job(job_id, millis / 1000, config, data_name, data_path)
            self._jobs[job_id] = job
            return job

    def _new_id(self) -> str:
        while True:
            job_id = "".join(self._ids.choice(ID_ALPHABET) for _ in range(10))
            if job_id not in self._jobs:
                return job_id

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def read(self, job_id: str, view: Callable[[Job], Any]) -> Any:
        """Apply ``view`` under the lock so it sees one consistent state; KeyError if unknown."""
        with self._lock:
            return view(self._jobs[job_id])

    def update(self, job_id: str, change: Callable[[Job], Any]) -> Any:
        """Apply ``change`` under the lock and wake waiters; returns what ``change`` returns."""
        with self._lock:
            result = change(self._jobs[job_id])
            self._changed.notify_all()
            return result

    def add_error(self, job_id: str, message: str) -> None:
        entry = {"message": message, "timestamp": iso_millis(time.time())}
        self.update(job_id, lambda job: job.errors.append(entry))

    def listing(self, created_before_ms: int | None, include_deleted: bool, limit: int | None) -> list[dict]:
        """JobDetails, newest first; expired jobs have left the listing, deleted ones only on request."""
        hidden = {"expired"} if include_deleted else {"expired", "deleted"}
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.status not in hidden]
            if created_before_ms is not None:
                jobs = [job for job in jobs if round(job.created_ts * 1000) < created_before_ms]
            jobs.sort(key=lambda job: job.created_ts, reverse=True)
            return [job.details() for job in jobs[:limit]]

    def collect(self, view: Callable[[Job], Any]) -> list[Any]:
        """``view`` of every job, taken under the lock (jobs are only ever read or changed under it)."""
        with self._lock:
            return [view(job) for job in self._jobs.values()]

    def wait_terminal(self, job_id: str, timeout: float) -> None:
        """Block until the job is terminal, the timeout passes or the emulator stops."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._closing and self._jobs[job_id].status not in TERMINAL:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the emulator stops first; True if the whole time passed."""
        deadline = time.monotonic() + seconds
        with self._lock:
            while not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self._changed.wait(remaining)
            return False

    def close(self) -> None:
        """Release every ``?wait=`` request and ``pause`` so the HTTP server can join its threads."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
