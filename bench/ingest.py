"""Webhook ingest: notifications per second and latency, our server against the lean durable handler.

Every round runs each target once, in a rotating order, so a machine that gets busier or quieter during
the benchmark shifts all targets alike; each figure in the report is the median over the rounds. Every run
starts from nothing: a fresh directory, a fresh database (a fresh PostgreSQL schema), a fresh server.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import jobrows, targets
from bench.bodies import ROOT
from bench.stats import percentile

TARGETS = ("ours", "ours-postgresql", "lean")
LEAN_IDS = 40_000  # the lean handler needs no rows, so ids enough for any run are free


@dataclass(frozen=True)
class Plan:
    label: str
    size: int
    rounds: int
    seconds: float  # measured per run, after the warmup
    warmup: int  # answers not measured: workers importing, caches filling
    pool: int  # job rows prepared per run of ours; a run that uses them all ends early
    concurrency: int = 16  # twice the server's 8 threads, so it always has work queued


def run(plans: list[Plan], scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    problem = jobrows.postgres_problem()
    chosen = [name for name in TARGETS if not (name == "ours-postgresql" and problem)]
    results: dict[str, Any] = {"targets": chosen, "postgresql_skipped": problem, "plans": {}}
    # Every run's files stay until the end: on ext4, creating a file costs more for a minute or more after
    # thousands were deleted, and that would fall on whichever run came next.
    kept = Path(tempfile.mkdtemp(prefix="ingest-runs-", dir=scratch))
    try:
        for plan in plans:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
            for number in range(plan.rounds):
                for name in chosen[number % len(chosen):] + chosen[:number % len(chosen)]:
                    result = measure(name, plan, kept)
                    runs[name].append(result)
                    log(f"ingest {plan.label} round {number + 1}/{plan.rounds} {name}: "
                        f"{result['per_second']:.0f}/s p99 {result['p99_ms']:.1f} ms {result['all_statuses']}")
            results["plans"][plan.label] = {"plan": plan.__dict__, "runs": runs}
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return results


def measure(name: str, plan: Plan, kept: Path, **extra: str) -> dict[str, Any]:
    """One run, in a fresh directory under `kept`; `extra`: more settings for our server (bench/s3.py)."""
    work = Path(tempfile.mkdtemp(prefix=f"ingest-{name}-", dir=kept))
    ids = jobrows.new_ids(LEAN_IDS if name == "lean" else plan.pool)
    with prepared(name, work, ids, extra) as (server, stored):
        with targets.running(server):
            result = load(server, ids, plan, work)
        result["stored"] = stored()
    return result


@contextlib.contextmanager
def prepared(name: str, work: Path, ids: list[str],
             extra: dict[str, str]) -> Iterator[tuple[targets.Server, Callable[[], int]]]:
    """The server to load, and how to count the jobs it durably stored."""
    if name == "lean":
        yield targets.lean(work), lambda: lean_rows(work / "lean.db")
        return
    with (jobrows.fresh_schema() if name == "ours-postgresql"
          else contextlib.nullcontext(f"sqlite:///{work / 'jobs.db'}")) as url:
        store = jobrows.create_running(url, ids)
        yield targets.ours(work, url, name=name, **extra), lambda: jobrows.count_done(store)


def lean_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0])


def load(server: targets.Server, ids: list[str], plan: Plan, work: Path) -> dict[str, Any]:
    """Run the load generator in its own process and read back what it measured."""
    ids_file, out = work / "ids.txt", work / "loadgen.json"
    ids_file.write_text("\n".join(ids))
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--secret", targets.SECRET,
               "--ids", str(ids_file), "--size", str(plan.size), "--concurrency", str(plan.concurrency),
               "--warmup", str(plan.warmup), "--duration", str(plan.seconds), "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=plan.seconds + 300)
    result: dict[str, Any] = json.loads(out.read_text())
    latencies = result.pop("latencies_ms")
    result.update(p50_ms=percentile(latencies, 0.50), p99_ms=percentile(latencies, 0.99))
    result["errors"] = sum(count for status, count in result["all_statuses"].items() if status != "200")
    return result
