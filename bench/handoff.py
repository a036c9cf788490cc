"""The hand-off (`python -m bench --only handoff`): how soon a finished job reaches the application with the
server delivering, and what handing on adds to a notification's answer.

Two targets in interleaved rounds: our server as usual, and our server with HANDOFF_URL pointing at a consumer
on loopback (a thread of this process that answers 204 at once and notes when each job's event arrived). The
same notifications go to both, from `concurrency` connections, paced at `rate` a second: twice what one account
can cause (the API creates at most 10 jobs a second), so what is measured is the latency of a busy account, not
of a queue a closed loop would build. The hand-off latency runs from a notification's sending to its event's
arrival.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench import jobrows, targets
from bench.bodies import template
from bench.loadgen import headers

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


def run(count: int, rounds: int, scratch: Path, log: Callable[[str], None], concurrency: int = 4,
        rate: float = 20.0) -> dict[str, Any]:
    with consumer() as (url, arrived):
        chosen = {"ours": partial(measure, count, concurrency, rate, None, arrived),
                  "ours-handoff": partial(measure, count, concurrency, rate, url, arrived)}
        runs = targets.rounds("handoff", rounds, chosen, scratch, log)
    return {"jobs": count, "concurrency": concurrency, "rate": rate, "runs": runs}


def measure(count: int, concurrency: int, rate: float, url: str | None, arrived: dict[str, float],
            work: Path) -> dict[str, Any]:
    """One run: `count` notifications of running jobs; their answers' latency and, with a URL, the hand-off's."""
    ids = jobrows.new_ids(count)
    url_settings = {"HANDOFF_URL": url, "HANDOFF_SECRET": HANDOFF_SECRET} if url else {}
    database_url = f"sqlite:///{work / 'jobs.db'}"
    jobrows.create_running(database_url, ids)
    body, sent = template(20_000), {}
    with targets.running(targets.ours(work, database_url, **url_settings)) as server:
        start = time.perf_counter()

        def notify(number: int, job_id: str) -> float:
            time.sleep(max(0.0, start + number / rate - time.perf_counter()))  # paced, not a closed loop
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            sent[job_id] = time.perf_counter()
            connection.request("POST", f"/webhook?id={job_id}&status=success", body.body(job_id),
                               headers(targets.SECRET, job_id))
            connection.getresponse().read()
            connection.close()
            return time.perf_counter() - sent[job_id]

        with ThreadPoolExecutor(concurrency) as pool:
            answers = sorted(pool.map(notify, range(len(ids)), ids))
        deadline = time.monotonic() + 60
        while url and not all(job_id in arrived for job_id in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
    result = {"answer_p50_ms": percentile(answers, 50) * 1000, "answer_p99_ms": percentile(answers, 99) * 1000,
              "handoff_p50_ms": None, "handoff_p99_ms": None, "handed_on": 0}
    if url:
        handed = sorted(arrived[job_id] - sent[job_id] for job_id in ids if job_id in arrived)
        result.update(handoff_p50_ms=percentile(handed, 50) * 1000, handoff_p99_ms=percentile(handed, 99) * 1000,
                      handed_on=len(handed))
    return result


def percentile(values: list[float], share: float) -> float:
    """Of sorted values; nan when there are none."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(share / 100 * (len(values) - 1)))]
