"""The load generator: notifications as Speechmatics sends them, over loopback, from a process of its own.

A closed loop: `concurrency` keep-alive connections, each in its own thread, send a notification, wait for
the answer and send the next, until `warmup` + `seconds` have passed or every id is used (each a job the
database holds as `running`, named by its body's `job.id` too, signed with the job's own token). Only
requests sent after the warm-up are measured. With a `rate`, the n-th notification waits for its moment, n /
rate seconds after the start, so a busy account's latency is measured rather than a queue the loop built. It
runs in a spawned process, so it shares no interpreter with the benchmark that starts it.
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.bodies import BodyTemplate, template
from bench.jobrows import reference_for
from notification_flow.auth import job_token

Answer = tuple[str, float, float, str]  # (job id, sent, answered, status)


def headers(secret: str, job_id: str) -> dict[str, str]:
    """A notification's headers, with the job's own token, as its auth_headers carry it."""
    return {"Authorization": f"Bearer {job_token(secret, reference_for(job_id))}",
            "Content-Type": "application/json", "User-Agent": "Speechmatics-API/2.0"}


def sender(port: int, secret: str, ids: Iterator[tuple[int, str]], body: BodyTemplate, start: float, until: float,
           rate: float | None, answers: list[Answer]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120, blocksize=1 << 20)
    for number, job_id in ids:  # shared by the senders: each id is sent once
        if rate:
            time.sleep(max(0.0, start + number / rate - time.perf_counter()))
        sent = time.perf_counter()
        if sent > until:
            break
        try:
            connection.request("POST", f"/webhook?id={job_id}&status=success", body.body(job_id),
                               headers(secret, job_id))
            answer = connection.getresponse()
            answer.read()
            status = str(answer.status)
        except (OSError, http.client.HTTPException) as error:
            status = f"error: {type(error).__name__}"
            connection.close()
        answers.append((job_id, sent, time.perf_counter(), status))
    connection.close()


def run(port: int, secret: str, ids: list[str], size: int, concurrency: int, warmup: float, seconds: float,
        rate: float | None = None) -> dict[str, Any]:
    """The figures; with a `rate`, also each job's sending time (perf_counter: on Linux the system's monotonic
    clock, so another process's times compare with it)."""
    body, shared, answers = template(size), iter(enumerate(ids)), []
    start = time.perf_counter()
    measure_from = start + warmup
    threads = [threading.Thread(target=sender, args=(port, secret, shared, body, start, measure_from + seconds,
                                                     rate, answers)) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = [answer for answer in answers if answer[1] >= measure_from]
    latencies = sorted((answered - sent) * 1000 for _, sent, answered, _ in measured)
    window = max((answered for _, _, answered, _ in measured), default=measure_from) - measure_from
    statuses = Counter(status for *_, status in answers)
    return {"requests": len(measured), "per_second": len(measured) / window if window > 0 else 0.0,
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99), "statuses": dict(statuses),
            "errors": sum(count for status, count in statuses.items() if status != "200"),
            **({"sent": {job_id: sent for job_id, sent, _, _ in answers}} if rate else {})}


def percentile(values: list[float], fraction: float) -> float:
    """Of sorted values, by nearest rank (a value actually observed); nan when there are none."""
    return values[max(0, math.ceil(fraction * len(values)) - 1)] if values else math.nan


def measure(port: int, secret: str, ids: list[str], size: int, concurrency: int, warmup: float, seconds: float,
            rate: float | None = None) -> dict[str, Any]:
    """`run` in a process of its own; what it measured."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, port, secret, ids, size, concurrency, warmup, seconds, rate).result(
            timeout=seconds + 300)
