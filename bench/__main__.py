"""`python -m bench` (what `make bench` runs): every benchmark, then docs/benchmarks-results.md and its figure.

    python -m bench                  # the full run, about 15 minutes on 2 cores (plus the venv on a fresh machine)
    python -m bench --quick          # one short round of each, to try the machinery (report marked as such)
    python -m bench --only ingest    # some benchmarks only; the report keeps the others' last results
    python -m bench --only history   # cost against history size: docs/benchmarks-history.md only
    python -m bench --only s3        # ingest into S3 against local disk, 200 MB into S3: docs/benchmarks-s3.md only

Raw results go to bench/results/ (not in git): one JSON file per run, and latest.json, which the report
is rendered from. The history benchmark renders a page of its own, docs/benchmarks-history.md, so running it
alone never rewrites docs/benchmarks-results.md from results this machine does not have. Scratch files
(transcripts, databases, the 200 MB body) live beside them and are removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import history, history_report, ingest, machine, memory, reconcile, report, s3, s3_report, submission
from bench.bodies import ROOT

RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ("ingest", "memory", "reconcile", "submission", "history", "s3")
OWN_PAGES = {"history": history_report, "s3": s3_report}  # each renders a page of its own


def full_plan() -> dict[str, Any]:
    """Rounds and lengths of the committed run, chosen to fit in about 15 minutes on 2 cores."""
    return {"ingest": [ingest.Plan("20 KB", 20_000, rounds=7, seconds=5, warmup=200, pool=8_000, diagnose=True),
                       ingest.Plan("2 MB", 2_000_000, rounds=3, seconds=6, warmup=16, pool=600, diagnose=True)],
            "memory": {"size": 200_000_000, "rounds": 3},
            "reconcile": {"count": 1_000, "rounds": 3},
            "submission": {"files": 200, "rounds": 3},
            "history": {"sizes": [1_000, 100_000, 1_000_000], "rounds": 5},
            "s3": {"ingest": ingest.Plan("20 KB", 20_000, rounds=5, seconds=5, warmup=200, pool=8_000),
                   "memory": {"size": 200_000_000, "rounds": 3}}}


def quick_plan() -> dict[str, Any]:
    return {"ingest": [ingest.Plan("20 KB", 20_000, rounds=1, seconds=2, warmup=50, pool=4_000, diagnose=True),
                       ingest.Plan("2 MB", 2_000_000, rounds=1, seconds=2, warmup=4, pool=200, diagnose=True)],
            "memory": {"size": 200_000_000, "rounds": 1},
            "reconcile": {"count": 200, "rounds": 1},
            "submission": {"files": 40, "rounds": 1},
            "history": {"sizes": [1_000, 10_000], "rounds": 1},
            "s3": {"ingest": ingest.Plan("20 KB", 20_000, rounds=1, seconds=2, warmup=50, pool=4_000),
                   "memory": {"size": 200_000_000, "rounds": 1}}}


def run_benchmark(name: str, plan: dict[str, Any], scratch: Path, log: Callable[[str], None]) -> Any:
    if name == "ingest":
        return ingest.run(plan["ingest"], scratch, log)
    if name == "memory":
        return memory.run(plan["memory"]["size"], plan["memory"]["rounds"], scratch, log)
    if name == "reconcile":
        return reconcile.run(plan["reconcile"]["count"], plan["reconcile"]["rounds"], scratch, log)
    if name == "history":
        return history.run(plan["history"]["sizes"], plan["history"]["rounds"], scratch, log)
    if name == "s3":
        return s3.run(plan["s3"], scratch, log)
    return submission.run(plan["submission"]["files"], plan["submission"]["rounds"], scratch, log)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def previous_results() -> dict[str, Any]:
    latest = RESULTS / "latest.json"
    return json.loads(latest.read_text()) if latest.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write docs/benchmarks-results.md.")
    parser.add_argument("--quick", action="store_true", help="one short round of each (not for committing)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=RESULTS))
    plan = quick_plan() if args.quick else full_plan()
    results = {**previous_results(), "machine": machine.describe(scratch), "quick": args.quick}
    started = time.monotonic()
    try:
        for name in args.only:
            log(f"{name}: starting")
            results[name] = run_benchmark(name, plan, scratch, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"].update(load_after=machine.load_average(), minutes=(time.monotonic() - started) / 60)
    text = json.dumps(results)
    (RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    written = []
    if set(args.only) - set(OWN_PAGES):
        report.write(results)
        written.append(report.DOC)
    for name, page in OWN_PAGES.items():
        if name in args.only:
            page.write(results)
            written.append(page.DOC)
    log(f"done in {results['machine']['minutes']:.1f} min: {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
