"""`python -m bench` (what `make bench` runs): every benchmark, then the results pages.

Options and what each page holds: docs/benchmarks.md, "Running it". Raw results go to
bench/results/latest.json (not in git), which the pages are rendered from. Only the pages showing a
benchmark that ran are rewritten, so running history or S3 alone never rewrites docs/benchmarks-results.md
from results this machine does not have. The machine and its load average, before and after, are recorded
too: `make bench` may share the machine with other work, and a reader should see that rather than guess it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ROOT, ingest, report, scripts

RESULTS = ROOT / "bench" / "results"


def plan(quick: bool) -> dict[str, Callable[[Path], Any]]:
    """Rounds and lengths: the full run fits in about 15 minutes on 2 cores; --quick only tries the machinery."""
    def rounds(full: int) -> int:
        return 1 if quick else full

    ingest_20k = ingest.Plan("20 KB", 20_000, rounds(7), 2 if quick else 5, warmup=1, pool=8_000,
                             targets=(*ingest.TARGETS, "ours-handoff"))
    ingest_2m = ingest.Plan("2 MB", 2_000_000, rounds(3), 2 if quick else 6, warmup=1, pool=600)
    s3_20k = ingest.Plan("20 KB", 20_000, rounds(5), 2 if quick else 5, warmup=1, pool=8_000)
    return {"ingest": lambda scratch: ingest.run([ingest_20k, ingest_2m], scratch, log),
            "memory": lambda scratch: ingest.memory(200_000_000, rounds(3), scratch, log),
            "reconcile": lambda scratch: scripts.reconcile(200 if quick else 1_000, rounds(3), scratch, log),
            "submission": lambda scratch: scripts.submission(40 if quick else 200, rounds(3), scratch, log),
            "history": lambda scratch: scripts.history([1_000, 10_000] if quick else [1_000, 1_000_000],
                                                       rounds(5), scratch, log),
            "s3": lambda scratch: ingest.into_s3(s3_20k, 200_000_000, rounds(3), scratch, log),
            "handoff": lambda scratch: ingest.handoff(50 if quick else 300, rounds(3), scratch, log)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    dirty = git("status", "--porcelain", "server.py", "client.py", "cronjob.py", "notification_flow")
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(dirty),
            "load_before": load_average()}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write their pages in docs/.")
    parser.add_argument("--quick", action="store_true", help="one short round of each (not for committing)")
    parser.add_argument("--only", nargs="+", choices=list(plan(quick=False)), default=list(plan(quick=False)))
    args = parser.parse_args(argv)
    runs = plan(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest.json"
    results = {**(json.loads(latest.read_text()) if latest.is_file() else {}), "machine": machine(),
               "quick": args.quick}
    scratch, started = Path(tempfile.mkdtemp(prefix="scratch-", dir=RESULTS)), time.monotonic()
    try:
        for name in args.only:
            log(f"{name}: starting")
            results[name] = runs[name](scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"].update(load_after=load_average(), minutes=(time.monotonic() - started) / 60)
    latest.write_text(json.dumps(results))
    report.write(results, args.only)
    log(f"done in {results['machine']['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
