"""The load generator: notifications as Speechmatics sends them, from a process of its own, over loopback.

    python -m bench.loadgen --port 8080 --secret S --ids ids.txt --size 20000 --concurrency 16 --out r.json

A closed loop: `--concurrency` keep-alive connections, each in its own thread, send a notification, wait for
the answer and send the next, for `--duration` seconds after `--warmup` answers or until every id in
`--ids` is used (each a job the database holds as `running`, named by its body's `job.id` too). Only
requests sent after the warmup are measured. `--body-file` sends one file as the body instead, streamed
(the memory benchmark).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.bodies import BodyTemplate, template
from bench.jobrows import reference_for
from notification_flow.auth import job_token


class Tally:
    """What came back: latencies of the measured requests, and the count of every answer by status."""

    def __init__(self, warmup: int, duration: float) -> None:
        self.warmup, self.duration, self.lock = warmup, duration, threading.Lock()
        self.latencies_ms: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.measure_from, self.measure_until = time.perf_counter(), 0.0

    def record(self, status: str, started: float, finished: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if self.statuses.total() == self.warmup:
                self.measure_from = finished
            if self.statuses.total() > self.warmup and started >= self.measure_from:
                self.latencies_ms.append((finished - started) * 1000)
                self.measure_until = finished

    def more(self) -> bool:
        """Whether to send another request: always during warmup, then until the duration is up."""
        return self.statuses.total() < self.warmup or time.perf_counter() < self.measure_from + self.duration

    def summary(self) -> dict[str, Any]:
        seconds = self.measure_until - self.measure_from
        return {"requests": len(self.latencies_ms), "seconds": seconds, "all_statuses": dict(self.statuses),
                "per_second": len(self.latencies_ms) / seconds if seconds > 0 else 0.0,
                "latencies_ms": self.latencies_ms}


def sender(args: argparse.Namespace, ids: Iterator[str], lock: threading.Lock, tally: Tally,
           body_template: BodyTemplate | None) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120, blocksize=1 << 20)
    while tally.more():
        with lock:
            job_id = next(ids, None)
        if job_id is None:
            break
        token = job_token(args.secret, reference_for(job_id))  # each job's own, as its auth_headers carry it
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "User-Agent": "Speechmatics-API/2.0"}
        started = time.perf_counter()
        try:
            if body_template is None:
                with args.body_file.open("rb") as body:
                    headers["Content-Length"] = str(args.body_file.stat().st_size)
                    connection.request("POST", f"/webhook?id={job_id}&status=success", body, headers)
                    answer = connection.getresponse()
            else:
                connection.request("POST", f"/webhook?id={job_id}&status=success", body_template.body(job_id),
                                   headers)
                answer = connection.getresponse()
            answer.read()
            status = str(answer.status)
        except (OSError, http.client.HTTPException) as error:
            status = f"error: {type(error).__name__}"
            connection.close()
        tally.record(status, started, time.perf_counter())
    connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Send one notification per id, closed loop, and time them.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--ids", type=Path, required=True, help="file of job ids, one a line")
    parser.add_argument("--size", type=int, default=20_000, help="body size in bytes")
    parser.add_argument("--body-file", type=Path, help="send this file as the body instead (its job.id must match)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=0, help="answers not measured")
    parser.add_argument("--duration", type=float, default=float("inf"), help="seconds measured after the warmup")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    args = parser.parse_args(argv)
    ids = [line.strip() for line in args.ids.read_text().splitlines() if line.strip()]
    tally, shared, lock = Tally(min(args.warmup, max(0, len(ids) - 1)), args.duration), iter(ids), threading.Lock()
    body_template = None if args.body_file else template(args.size)
    threads = [threading.Thread(target=sender, args=(args, shared, lock, tally, body_template))
               for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    args.out.write_text(json.dumps(tally.summary()))


if __name__ == "__main__":
    main()
