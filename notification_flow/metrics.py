"""Prometheus metrics for the server: what its workers count, and what the database says at scrape time.

Counters and the histogram live in the worker that counts them. Under gunicorn that is one of several
processes, so `python server.py` gives them a shared directory (PROMETHEUS_MULTIPROC_DIR, created at start and
removed at exit) and a scrape adds up every worker's files. prometheus_client picks its storage when it is
first imported, so it is imported here only inside functions, which run in the workers after the directory
is set: importing this module never fixes the choice too early.

Everything about jobs is read from the database when scraped, with queries that touch only unfinished jobs
(through an index) and one-row tables, so a scrape costs the same whatever the history holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from notification_flow.api import RETENTION_SECONDS
from notification_flow.db import StoreUnavailable
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import OPEN_STATES, State
from notification_flow.passes import COUNTS, last_pass

log = logging.getLogger("server")
PREFIX = "transcribe_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_JOB_PATH = re.compile(r"/jobs/[^/]+")


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """A fresh directory for the workers' metric files: an existing PROMETHEUS_MULTIPROC_DIR is emptied (old
    files would add a dead run's counts), otherwise a temporary one is made and removed afterwards."""
    given = os.environ.get(MULTIPROC_ENV)
    path = given or tempfile.mkdtemp(prefix="transcribe-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
    log.info("metrics directory %s", path)
    try:
        yield path
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges must not be summed any more."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Metrics:
    """The counters one process updates; `exposition()` renders them with the database's view."""

    def __init__(self, store: JobStore) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.store = store
        self.registry = CollectorRegistry()  # one per app, so that several apps in one process never clash
        self.notifications = Counter(f"{PREFIX}notifications_total", "Notifications answered, by outcome and "
                                     "HTTP status", ["outcome", "code"], registry=self.registry)
        self.handling = Histogram(f"{PREFIX}notification_handling_seconds", "Time to handle one notification",
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                  registry=self.registry)
        self.transcripts = Counter(f"{PREFIX}transcripts_written_total", "Transcript files written by the "
                                   "server", registry=self.registry)
        self.api_calls = Counter(f"{PREFIX}api_calls_total", "Speechmatics API calls made by the server, by "
                                 "endpoint and answer class", ["endpoint", "answer"], registry=self.registry)

    def observe_notification(self, outcome: str, code: int, seconds: float) -> None:
        self.notifications.labels(outcome=outcome, code=str(code)).inc()
        self.handling.observe(seconds)

    def counting_writes(self, publish: Callable[..., bool]) -> Callable[..., bool]:
        """Wrap `TranscriptFiles.publish`, which says whether it wrote the file (duplicates write nothing)."""
        def counted(*args: Any, **kwargs: Any) -> bool:
            written = publish(*args, **kwargs)
            if written:
                self.transcripts.inc()
            return written
        return counted

    def count_api_answer(self, response: Any) -> None:
        """An httpx response hook: `GET /v2/jobs/{id}/transcript` → endpoint `GET /jobs/{id}/transcript`."""
        path = _JOB_PATH.sub("/jobs/{id}", response.request.url.path.split("/v2", 1)[-1])
        answer = "429" if response.status_code == 429 else f"{response.status_code // 100}xx"
        self.api_calls.labels(endpoint=f"{response.request.method} {path}", answer=answer).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of this process's counters (or every worker's) and the database's gauges."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry) + generate_latest(_DatabaseRegistry(self.store))
        return text, CONTENT_TYPE_LATEST


class _DatabaseRegistry:
    """A registry-like object whose one collector reads the database; generate_latest only calls collect()."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(f"{PREFIX}database_up", "1 if the database answered this scrape's queries")
        try:
            facts = database_facts(self.store)
        except StoreUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(f"{PREFIX}jobs", "Unfinished jobs, by state (finished ones are counted by "
                                 "transcribe_notifications_total and the reconciler's pass)", labels=["state"])
        for state in OPEN_STATES:
            jobs.add_metric([state.value], facts["open"].get(state.value, 0))
        yield jobs
        oldest = GaugeMetricFamily(f"{PREFIX}oldest_unfinished_job_age_seconds", "Age of the oldest job still "
                                   "submitting or running (0 when there is none)")
        oldest.add_metric([], facts["oldest_open_age"])
        yield oldest
        if facts["expires_in"] is not None:
            expiry = GaugeMetricFamily(f"{PREFIX}oldest_unfetched_job_expires_in_seconds", "Seconds until "
                                       "Speechmatics deletes the data of the oldest running job whose transcript "
                                       "we have not stored (7 days after creation); absent when there is none")
            expiry.add_metric([], facts["expires_in"])
            yield expiry
        early = GaugeMetricFamily(f"{PREFIX}early_notifications", "Notifications kept for a job id not recorded "
                                  "yet")
        early.add_metric([], facts["early"])
        yield early
        failed = GaugeMetricFamily(f"{PREFIX}submissions_failed_last_hour", "Jobs recorded submit_failed in the "
                                   "last hour (client.py is not scraped: this is how its failures show)")
        failed.add_metric([], facts["submit_failed"])
        yield failed
        yield from _pass_metrics(facts["pass"])


def _pass_metrics(summary: dict[str, Any] | None) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    if summary is None:  # no pass recorded yet: absent, which the silence alert treats as silence
        return
    ended = GaugeMetricFamily(f"{PREFIX}reconciler_last_pass_end_timestamp_seconds", "When cronjob.py's last "
                              "pass ended (epoch seconds, database clock)")
    ended.add_metric([], summary["ended_at"])
    yield ended
    duration = GaugeMetricFamily(f"{PREFIX}reconciler_last_pass_duration_seconds", "How long that pass took")
    duration.add_metric([], summary["duration"])
    yield duration
    jobs = GaugeMetricFamily(f"{PREFIX}reconciler_last_pass_jobs", "What cronjob.py's last pass found, by "
                             "result", labels=["result"])
    for result in COUNTS:
        jobs.add_metric([result], summary[result])
    yield jobs
    complete = GaugeMetricFamily(f"{PREFIX}reconciler_last_pass_complete", "1 if that pass ran to its end, 0 if "
                                 "it was cut short (the API or the database unreadable, a defect)")
    complete.add_metric([], summary["complete"])
    yield complete


def database_facts(store: JobStore) -> dict[str, Any]:
    """One read-only transaction: counts and ages of unfinished jobs, early notifications, the last pass."""
    with store.database.transaction(write=False) as tx:
        now = tx.now()
        rows = tx.execute("SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs "
                          "WHERE status IN ($1, $2) GROUP BY status", *OPEN_STATES)
        early = tx.execute("SELECT COUNT(*) AS n FROM early_notifications")[0]["n"]
        failed = tx.execute("SELECT COUNT(*) AS n FROM jobs WHERE status = $1 AND updated_at > $2",  # indexed
                            State.SUBMIT_FAILED, now - 3600)[0]["n"]
        summary = last_pass(tx)
    oldest = {row["status"]: float(row["oldest"]) for row in rows}
    running = oldest.get(State.RUNNING.value)
    return {"open": {row["status"]: int(row["n"]) for row in rows},
            "oldest_open_age": max(0.0, now - min(oldest.values())) if oldest else 0.0,
            "expires_in": None if running is None else running + RETENTION_SECONDS - now,
            "early": int(early), "submit_failed": int(failed), "pass": summary}
