"""The hand-off (`python -m bench --only handoff`): how soon a finished job reaches the application with the
server delivering, and what handing on adds to a notification's answer.

Two targets in interleaved rounds: our server as usual, and our server with HANDOFF_URL pointing at a consumer
on loopback (a thread of this process that answers 204 at once and notes when each job's event arrived). The
same notifications go to both, from the load generator's `concurrency` connections, paced at `rate` a second:
twice what one account can cause (the API creates at most 10 jobs a second), so what is measured is the latency
of a busy account, not of a queue a closed loop would build. The hand-off latency runs from a notification's
sending to its event's arrival. What handing on costs a server at full load is bench/ingest.py's `ours-handoff`.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from bench import jobrows, loadgen, targets

HANDOFF_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@contextlib.contextmanager
def consumer() -> Iterator[tuple[str, dict[str, float]]]:
    """A consumer that takes every event at once: its URL, and each job's arrival time (perf_counter)."""
    arrived: dict[str, float] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            arrived.setdefault(event["data"]["job_id"], time.perf_counter())
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/handoff", arrived
    finally:
        server.shutdown()
        server.server_close()


def settings(url: str) -> dict[str, str]:
    """What points our server at the consumer (bench/ingest.py's `ours-handoff` too)."""
    return {"HANDOFF_URL": url, "HANDOFF_SECRET": HANDOFF_SECRET}


def run(count: int, rounds: int, scratch: Path, log: Callable[[str], None], concurrency: int = 4,
        rate: float = 20.0) -> dict[str, Any]:
    with consumer() as (url, arrived):
        chosen = {"ours": partial(measure, count, concurrency, rate, arrived),
                  "ours-handoff": partial(measure, count, concurrency, rate, arrived, **settings(url))}
        runs = targets.rounds("handoff", rounds, chosen, scratch, log)
    return {"jobs": count, "concurrency": concurrency, "rate": rate, "runs": runs}


def measure(count: int, concurrency: int, rate: float, arrived: dict[str, float], work: Path,
            **handing_on: str) -> dict[str, Any]:
    """One run: `count` notifications of running jobs; their answers' figures and, handing on, the hand-off's."""
    ids, database_url = jobrows.new_ids(count), f"sqlite:///{work / 'jobs.db'}"
    jobrows.create_running(database_url, ids)
    with targets.running(targets.ours(work, database_url, **handing_on)) as server:
        result = loadgen.measure(server.port, targets.SECRET, ids, 20_000, concurrency, warmup=0,
                                 seconds=count / rate + 60, rate=rate)
        deadline = time.monotonic() + 60
        while handing_on and not all(job_id in arrived for job_id in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
    sent = result.pop("sent")
    handed = sorted((arrived[job_id] - sent[job_id]) * 1000 for job_id in ids if job_id in arrived)
    if handed:
        result.update(handoff_p50_ms=loadgen.percentile(handed, 0.50), handoff_p99_ms=loadgen.percentile(handed, 0.99))
    return {**result, "handed_on": len(handed)}
