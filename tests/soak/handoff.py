"""The soak's hand-off: every process hands finished jobs to a flaky consumer; once the run is over,
cronjob.py (as cron would run it) delivers whatever is still due; then the counts issue 22 asks for."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from notification_flow.handoff import event_id
from notification_flow.jobs import open_store
from notification_flow.lifecycle import FINISHED_STATES
from tests import RUNTIME_PYTHON
from tests.integration.handoff_consumer import SECRET, Consumer, consumer_running
from tests.integration.support import ROOT, Stack
from tests.soak.options import Say
from tests.soak.records import SoakResult

FLAKY = 0.1  # attempts that meet a 500, a hang-up or an answer past the timeout
TIMEOUT_SECONDS = 2
DELIVERED_WITHIN = 240  # seconds after the run: the retries of an event unlucky several times over


@contextlib.contextmanager
def flaky_consumer(seed: int) -> Iterator[Consumer]:
    with consumer_running(flaky=FLAKY, rng=random.Random(f"{seed}:handoff"),
                          slow_seconds=TIMEOUT_SECONDS + 1) as consumer:
        yield consumer


def handoff_env(consumer: Consumer) -> dict[str, str]:
    """What every server, client and cronjob of the run gets."""
    return {"HANDOFF_URL": consumer.url, "HANDOFF_SECRET": SECRET, "HANDOFF_TIMEOUT": str(TIMEOUT_SECONDS)}


def backlog(database_url: str) -> int:
    with open_store(database_url, migrate_schema=False).database.transaction(write=False) as tx:
        return int(tx.execute("SELECT COUNT(*) AS n FROM handoff_events WHERE state = 'pending'")[0]["n"])


def deliver_the_rest(stack: Stack, progress: Say) -> float:
    """cronjob.py --loop until nothing waits (or the deadline): returns how long that took."""
    started = time.monotonic()
    log = (stack.tmp / "logs" / "cronjob-handoff.log").open("ab")
    loop = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--loop", "1"], cwd=stack.tmp,
                            env=stack.env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        while backlog(stack.database_url) and time.monotonic() - started < DELIVERED_WITHIN:
            time.sleep(1)
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=60)
    progress(f"hand-off: {backlog(stack.database_url)} events still waiting after "
             f"{time.monotonic() - started:.0f}s of cronjob.py passes")
    return time.monotonic() - started


def check_handoff(stack: Stack, consumer: Consumer, result: SoakResult, seconds: float) -> None:
    """Every final job's event taken by the consumer (signed: it checked), none dead; duplicates reported."""
    store = open_store(stack.database_url, migrate_schema=False)
    delivered = consumer.delivered()
    final = [job for job in store.jobs() if job.status in FINISHED_STATES]
    missing = [job for job in final if event_id(job.reference, job.status) not in delivered]
    with store.database.transaction(write=False) as tx:
        dead = tx.execute("SELECT reference FROM handoff_events WHERE state = 'dead'")
    result.counters["final jobs without a delivered hand-off event"] = len(missing)
    result.examples["final jobs without a delivered hand-off event"] = [f"{j.job_id}({j.status})" for j in missing]
    result.counters["dead hand-off events"] = len(dead)
    result.examples["dead hand-off events"] = [row["reference"] for row in dead]
    attempts: dict[str, Any] = {}
    for seen in consumer.received:
        attempts[seen["what"]] = attempts.get(seen["what"], 0) + 1
    result.observed["hand-off events taken by the consumer"] = len(delivered)
    result.observed["  taken more than once (at least once: allowed)"] = consumer.taken_more_than_once()
    result.observed["  attempts refused / hung up / too slow"] = (f"{attempts.get('fail', 0)} / "
                                                                  f"{attempts.get('hang-up', 0)} / "
                                                                  f"{attempts.get('slow', 0)}")
    result.timings["hand-off: cronjob.py passes until nothing waited"] = seconds
