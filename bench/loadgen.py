"""The load generator: notifications as Speechmatics sends them, over loopback, from a process of its own.

A closed loop: `concurrency` keep-alive connections, each in its own thread, send a notification, wait for
the answer and send the next, until `warmup` + `seconds` have passed or every id is used (each a job the
database holds as `running`, named by its body's `job.id` too, signed with the job's own token). Only
requests sent after the warm-up are measured. It runs in a spawned process, so it shares no interpreter
with the benchmark that starts it.
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

Answer = tuple[float, float, str]  # (sent, answered, status)


def headers(secret: str, job_id: str) -> dict[str, str]:
    """A notification's headers, with the job's own token, as its auth_headers carry it."""
    return {"Authorization": f"Bearer {job_token(secret, reference_for(job_id))}",
            "Content-Type": "application/json", "User-Agent": "Speechmatics-API/2.0"}


def sender(port: int, secret: str, ids: Iterator[str], body: BodyTemplate, until: float, answers: list[Answer]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120, blocksize=1 << 20)
    for job_id in ids:  # shared by the senders: each id is sent once
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
        answers.append((sent, time.perf_counter(), status))
    connection.close()


def run(port: int, secret: str, ids: list[str], size: int, concurrency: int, warmup: float,
        seconds: float) -> dict[str, Any]:
    body, shared, answers = template(size), iter(ids), []
    measure_from = time.perf_counter() + warmup
    threads = [threading.Thread(target=sender, args=(port, secret, shared, body, measure_from + seconds, answers))
               for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = [answer for answer in answers if answer[0] >= measure_from]
    latencies = sorted((answered - sent) * 1000 for sent, answered, _ in measured)
    window = max((answered for _, answered, _ in measured), default=measure_from) - measure_from
    statuses = Counter(status for _, _, status in answers)

    def percentile(fraction: float) -> float:  # nearest rank: a latency actually observed
        return latencies[max(0, math.ceil(fraction * len(latencies)) - 1)] if latencies else math.nan

    return {"requests": len(measured), "per_second": len(measured) / window if window > 0 else 0.0,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "statuses": dict(statuses),
            "errors": sum(count for status, count in statuses.items() if status != "200")}


def measure(port: int, secret: str, ids: list[str], size: int, concurrency: int, warmup: float,
            seconds: float) -> dict[str, Any]:
    """`run` in a process of its own; what it measured."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, port, secret, ids, size, concurrency, warmup, seconds).result(timeout=seconds + 300)
