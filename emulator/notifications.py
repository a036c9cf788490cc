"""Notification delivery as documented: parallel callbacks, retries on a backoff, failures in job.errors.

Each ``notification_config`` entry of a finished job becomes one delivery: attempt 1 after the
(fault-injected) delay, then one more attempt per ``notify_retry_delays`` entry while attempts fail.
A 2xx answer ends it; anything else (other status, refused connection, timeout) is appended to the
job's ``errors`` with ``, retrying`` until the last attempt, which is followed by ``Sending
notification failed``, the wording of the service's documented example. The job status never changes.

Faults: dropped notifications are never sent; duplicates are a second, independent delivery; the
first ``fail_first_attempts`` attempts fail *without sending anything* (the receiver sees nothing,
the job records the failure and the retry follows); in hold mode an attempt is parked in a queue
until a test delivers, duplicates or drops it by key.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import requests

from emulator.faults import Faults
from emulator.jobs import JobTable, iso_millis
from emulator.notify_body import Outputs, build_body
from emulator.scheduler import Scheduler

USER_AGENT = "Speechmatics-API/2.0"
LOG_LIMIT = 10_000
TIMEOUT_TEXT = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
INJECTED_TEXT = "injected failure (not sent)"


@dataclass(frozen=True)
class Notification:
    """One callback to make: where, how, with which status, and whether it is a fault duplicate."""

    job_id: str
    url: str
    method: str
    status: str
    contents: tuple[str, ...] | None
    headers: tuple[tuple[str, str], ...]
    duplicate: bool = False

    @classmethod
    def from_config(cls, job_id: str, entry: dict[str, Any], status: str) -> Notification:
        contents = entry.get("contents")
        headers = tuple(split_header(line) for line in entry.get("auth_headers") or [])
        method = str(entry.get("method") or "post").upper()
        return cls(job_id, entry["url"], method, status, None if contents is None else tuple(contents), headers)

    @property
    def target(self) -> str:
        """The configured URL plus ``id`` and ``status``; a query string already there is kept."""
        query = f"id={self.job_id}&status={self.status}"
        base, _, fragment = self.url.partition("#")
        joined = f"{base}{'&' if '?' in base else '?'}{query}"
        return f"{joined}#{fragment}" if fragment else joined


def split_header(line: str) -> tuple[str, str]:
    """An ``auth_headers`` entry ("Name: value") as a header pair, split on the first colon."""
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


class Notifier:
    def __init__(self, jobs: JobTable, scheduler: Scheduler, faults: Faults) -> None:
        self._jobs = jobs
        self._scheduler = scheduler
        self._faults = faults
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._held: dict[str, tuple[Notification, int]] = {}
        self._keys = itertools.count(1)

    def job_finished(self, job_id: str, status: str, entries: list[dict[str, Any]]) -> None:
        """Start one delivery per notification_config entry; they run in parallel."""
        for index, entry in enumerate(entries):
            notification = Notification.from_config(job_id, entry, status)
            plan = self._faults.plan(job_id, index)
            if plan.dropped:
                self._record(notification, 1, "dropped", time.time())
                continue
            self._scheduler.call_later(plan.delay, self._attempt, notification, 1)
            if plan.duplicate_delay is not None:
                duplicate = replace(notification, duplicate=True)
                self._scheduler.call_later(plan.duplicate_delay, self._attempt, duplicate, 1)

    def _attempt(self, notification: Notification, number: int) -> None:
        """One automatic attempt; schedules the next on failure until the attempts run out."""
        options = self._faults.options
        if options.hold_notifications:
            self._hold(notification, number)
            return
        if number <= options.fail_first_attempts:
            outcome: int | str = f"error: {INJECTED_TEXT}"
            self._record(notification, number, outcome, time.time())
        else:
            outcome = self._send(notification, number)
        if _delivered(outcome):
            return
        delays = options.notify_retry_delays
        if number <= len(delays):
            self._jobs.add_error(notification.job_id, _failure_message(notification, outcome) + ", retrying")
            self._scheduler.call_later(delays[number - 1], self._attempt, notification, number + 1)
        else:
            self._jobs.add_error(notification.job_id, _final_message(notification, outcome))
            self._jobs.add_error(notification.job_id, "Sending notification failed")

    def _send(self, notification: Notification, number: int) -> int | str:
        """Make the HTTP request and log it; returns the status code or ``error: <text>``."""
        started = time.time()
        outputs = self._jobs.read(notification.job_id, Outputs.of)
        contents = None if notification.contents is None else list(notification.contents)
        body = build_body(contents, outputs)
        headers = {"User-Agent": USER_AGENT, **dict(notification.headers)}
        if body.content_type:
            headers["Content-Type"] = body.content_type
        timeout = self._faults.options.notify_timeout
        try:
            with requests.Session() as session:
                session.trust_env = False  # a proxy from the environment must not reroute local callbacks
                response = session.request(
                    notification.method, notification.target, data=body.data, headers=headers,
                    timeout=timeout, allow_redirects=False,
                )
                outcome: int | str = response.status_code
        except requests.Timeout:
            outcome = f"error: {TIMEOUT_TEXT}"
        except requests.RequestException as exc:
            outcome = f"error: {describe(exc)}"
        self._record(notification, number, outcome, started)
        return outcome

    def _record(self, notification: Notification, number: int, outcome: int | str, started: float) -> None:
        entry = {
            "job_id": notification.job_id,
            "url": notification.url,
            "method": notification.method,
            "status": notification.status,
            "attempt": number,
            "outcome": outcome,
            "duplicate": notification.duplicate,
            "started_at": iso_millis(started),
            "finished_at": iso_millis(time.time()),
        }
        with self._lock:
            self._log.append(entry)

    def _hold(self, notification: Notification, number: int) -> None:
        with self._lock:
            self._held[str(next(self._keys))] = (notification, number)
        self._record(notification, number, "held", time.time())

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def held(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._held.items())
        return [
            {"key": key, "job_id": n.job_id, "url": n.url, "method": n.method, "status": n.status,
             "attempt": number, "duplicate": n.duplicate}
            for key, (n, number) in items
        ]

    def deliver(self, key: str, keep: bool = False) -> int | str:
        """Send one held attempt now, synchronously; it leaves the queue unless ``keep``. KeyError if unknown."""
        with self._lock:
            notification, number = self._held[key] if keep else self._held.pop(key)
        outcome = self._send(notification, number)
        if not _delivered(outcome):
            self._jobs.add_error(notification.job_id, _final_message(notification, outcome))
        return outcome

    def drop(self, key: str) -> None:
        with self._lock:
            notification, number = self._held.pop(key)
        self._record(notification, number, "dropped", time.time())


def _delivered(outcome: int | str) -> bool:
    return isinstance(outcome, int) and 200 <= outcome < 300


def _reason(notification: Notification, outcome: int | str) -> str:
    if isinstance(outcome, int):
        return f"Response status: {outcome}"
    text = outcome.removeprefix("error: ")
    return f'HTTPError: {notification.method.capitalize()} "{notification.target}": {text}'


def _failure_message(notification: Notification, outcome: int | str) -> str:
    return f"Error in sending notification: unable to send notification: {_reason(notification, outcome)}"


def _final_message(notification: Notification, outcome: int | str) -> str:
    return f"unable to send notification: unable to send notification: {_reason(notification, outcome)}"


def describe(exc: requests.RequestException) -> str:
    """Short text for a failed request: the root cause (e.g. connection refused), not the URL again."""
    cause: BaseException = exc
    for _ in range(10):
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    if isinstance(cause, ConnectionRefusedError):
        return "connect: connection refused"
    return f"{type(exc).__name__}: {cause}"
