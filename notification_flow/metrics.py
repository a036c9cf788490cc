"""Prometheus metrics for the server: what its workers count, and what the database says at scrape time.

Counters and the histogram live in the worker that counts them. Under gunicorn that is one of several
processes, so `python server.py` gives them a shared directory (PROMETHEUS_MULTIPROC_DIR, created at start and
removed at exit) and a scrape adds up every worker's files. prometheus_client picks its storage when it is
first imported, so it is imported here only inside functions, which run in the workers after the directory
is set: importing this module never fixes the choice too early.

Everything about jobs is read from the database when scraped, with queries that touch only unfinished jobs
(through an index) and one-row tables, so a scrape costs the same whatever the history holds. The features
(hand-off, retention, notices) read their own gauges, in the same transaction: the server hands their
functions to `Metrics`, so this module knows none of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from notification_flow.api import RETENTION_SECONDS, ApiError
from notification_flow.db import StoreUnavailable, Transaction
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import OPEN_STATES, State
from notification_flow.passes import COUNTS, last_pass

log = logging.getLogger("server")
PREFIX = "transcribe_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
T = TypeVar("T")
# A feature's metric families (made by `gauge`), read inside the scrape's one read transaction.
Gauges = Callable[[Transaction], list[Any]]


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """A fresh directory for the workers' metric files: an existing PROMETHEUS_MULTIPROC_DIR is emptied (old
    files would add a dead run's counts), otherwise a temporary one is made and removed afterwards, by this
    process alone: a gunicorn worker, forked inside this block, leaves it too when it exits."""
    owner = os.getpid()
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
        if not given and os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """The counters one process updates; `exposition()` renders them with the database's view."""

    def __init__(self, store: JobStore, features: tuple[Gauges, ...] = ()) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

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
        self.database = DatabaseCollector(store, features)
        self.registry.register(self.database)

    def observe_notification(self, outcome: str, code: int, seconds: float) -> None:
        self.notifications.labels(outcome=str(outcome), code=str(code)).inc()
        self.handling.observe(seconds)

    def api_call(self, endpoint: str, call: Callable[..., T], *args: Any) -> T:
        """Make one call to the API, e.g. `GET /jobs/{id}/transcript`, counted by endpoint and by the class
        of its answer (`none` when there was none)."""
        status: int | None = 200
        try:
            return call(*args)
        except ApiError as error:
            status = error.status
            raise
        finally:
            answer = "none" if status is None else "429" if status == 429 else f"{status // 100}xx"
            self.api_calls.labels(endpoint=endpoint, answer=answer).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of this process's counters (or every worker's) and the database's gauges."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.database)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class DatabaseCollector:
    """A Prometheus custom collector: the gauges read from the database at each scrape."""

    def __init__(self, store: JobStore, features: tuple[Gauges, ...]) -> None:
        self.store, self.features = store, features

    def collect(self) -> Iterator[Any]:
        try:
            facts = database_facts(self.store, self.features)
        except StoreUnavailable:  # the features' queries too: they ran in the same transaction
            yield gauge("database_up", "1 if the database answered this scrape's queries", 0)
            return
        yield gauge("database_up", "1 if the database answered this scrape's queries", 1)
        yield gauge("jobs", "Unfinished jobs, by state (finished ones are counted by transcribe_notifications_total "
                    "and the reconciler's pass)", {(state.value,): facts["open"].get(state.value, 0)
                                                  for state in OPEN_STATES}, ["state"])
        yield gauge("oldest_unfinished_job_age_seconds", "Age of the oldest job still submitting or running (0 "
                    "when there is none)", facts["oldest_open_age"])
        if facts["expires_in"] is not None:
            yield gauge("oldest_unfetched_job_expires_in_seconds", "Seconds until Speechmatics deletes the data of "
                        "the oldest running job whose transcript we have not stored (7 days after creation); absent "
                        "when there is none", facts["expires_in"])
        yield gauge("submissions_failed_last_hour", "Jobs recorded submit_failed in the last hour (client.py is not "
                    "scraped: this is how its failures show)", facts["submit_failed"])
        yield from facts["features"]
        summary = facts["pass"]
        if summary is None:  # no pass recorded yet: absent, which the silence alert treats as silence
            return
        yield gauge("reconciler_last_pass_end_timestamp_seconds", "When cronjob.py's last pass ended (epoch "
                    "seconds, database clock)", summary["ended_at"])
        yield gauge("reconciler_last_pass_duration_seconds", "How long that pass took", summary["duration"])
        yield gauge("reconciler_last_pass_jobs", "What cronjob.py's last pass found, by result",
                    {(result,): summary[result] for result in COUNTS}, ["result"])
        yield gauge("reconciler_last_pass_complete", "1 if that pass ran to its end, 0 if it was cut short (the "
                    "API or the database unreadable, a defect)", summary["complete"])


def gauge(name: str, documentation: str, value: float | dict[tuple[str, ...], float],
          labels: list[str] | None = None, counter: bool = False) -> Any:
    """One gauge, or a counter kept in the database: a single value, or one value per tuple of label values."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    family = (CounterMetricFamily if counter else GaugeMetricFamily)(f"{PREFIX}{name}", documentation, labels=labels)
    for label_values, number in (value.items() if isinstance(value, dict) else [((), value)]):
        family.add_metric(list(label_values), number)
    return family


def database_facts(store: JobStore, features: tuple[Gauges, ...] = ()) -> dict[str, Any]:
    """One read-only transaction: counts and ages of unfinished jobs, the last pass, the features' gauges."""
    with store.database.transaction(write=False) as tx:
        now = tx.now()
        rows = tx.execute("SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs "
                          "WHERE status IN ($1, $2) GROUP BY status", *OPEN_STATES)
        failed = tx.execute("SELECT COUNT(*) AS n FROM jobs WHERE status = $1 AND updated_at > $2",  # indexed
                            State.SUBMIT_FAILED, now - 3600)[0]["n"]
        summary = last_pass(tx)
        families = [family for gauges in features for family in gauges(tx)]
    oldest = {row["status"]: float(row["oldest"]) for row in rows}
    running = oldest.get(State.RUNNING.value)
    return {"open": {row["status"]: int(row["n"]) for row in rows},
            "oldest_open_age": max(0.0, now - min(oldest.values())) if oldest else 0.0,
            "expires_in": None if running is None else running + RETENTION_SECONDS - now,
            "submit_failed": int(failed), "pass": summary, "features": families}
