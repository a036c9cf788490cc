"""The load generator: notifications as Speechmatics sends them, over loopback, from a process of its own.

A closed loop: `concurrency` keep-alive connections, each in its own thread, send a notification, wait for
the answer and send the next, until `warmup` + `seconds` have passed or every id is used (each a job the
database holds as `running`, named by its body's `job.id` too, signed with the job's own token). Only
requests sent after the warm-up are measured. With a `rate`, the n-th notification waits for its moment, n /
rate seconds after the start, so a busy account's latency is measured rather than a queue the loop built. It
runs in a spawned process, so it shares no interpreter with the benchmark that starts it.

Bodies are realistic json-v2 of any size: the results of a real 53 s Speechmatics transcript
(shared/reference/samples), repeated until the body reaches the wanted size, so the parser sees real key
order, nesting and number formats; without that sample an emulator-rendered transcript stands in. They are
compact JSON, as the API sends them. A body is a prefix, the job id and a suffix, so each request gets its
own id without serialising the body again.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import ROOT
from notification_flow.auth import job_token

SAMPLE = ROOT.parent / "shared" / "reference" / "samples" / "transcript-json-v2-real-53s.json"
PLACEHOLDER = "@@job-id@@"
Answer = tuple[str, float, float, str]  # (job id, sent, answered, status)


@dataclass(frozen=True)
class BodyTemplate:
    prefix: bytes
    suffix: bytes

    def body(self, job_id: str) -> bytes:
        return self.prefix + job_id.encode() + self.suffix


def sample() -> dict[str, Any]:
    if SAMPLE.is_file():
        return dict(json.loads(SAMPLE.read_text()))
    from emulator.transcripts import build_json_v2

    job = {"created_at": "2026-01-01T00:00:00.000Z", "data_name": "call.wav", "duration": 53, "id": "x"}
    config = {"transcription_config": {"language": "en"}}
    return dict(build_json_v2(job, config, 53.0, 1, 1, "2026-01-01T00:00:10.000000Z"))


def template(size: int) -> BodyTemplate:
    """A body of about `size` bytes (whole result items, so within one item of it), split around its job id."""
    document = sample()
    head = {**{key: value for key, value in document.items() if key != "results"},
            "job": {**document["job"], "id": PLACEHOLDER}}
    before, after = json.dumps(head, separators=(",", ":")).removesuffix("}").split(PLACEHOLDER)
    items = [json.dumps(item, separators=(",", ":")).encode() for item in document["results"]]
    chosen: list[bytes] = []
    used = len(before) + len(after) + len(PLACEHOLDER) + len(',"results":[]}')
    for item in itertools.cycle(items):
        if chosen and used + len(item) + 1 > size:
            break
        chosen.append(item)
        used += len(item) + 1
    return BodyTemplate(before.encode(), after.encode() + b',"results":[' + b",".join(chosen) + b"]}")


def reference_for(job_id: str) -> str:
    """Derived from the job id, so the load generator can sign with each job's own token unaided."""
    return f"bench{job_id}"


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
