"""`python -m bench` (what `make bench` runs): every benchmark, then the results pages.

Options and what each page holds: docs/benchmarks.md, "Running it". Raw results go to bench/results/ (not
in git): one JSON file per run, and latest.json, which the pages are rendered from. History and S3 have
pages of their own, so running one of them alone never rewrites docs/benchmarks-results.md from results
this machine does not have.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import history, history_report, ingest, machine, memory, reconcile, report, s3, submission
from bench.bodies import ROOT

RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ("ingest", "memory", "reconcile", "submission", "history", "s3")
OWN_PAGES = {"history": history_report.write, "s3": report.write_s3}  # each renders a page of its own


def plan(quick: bool) -> dict[str, Any]:
    """Rounds and lengths: the full run fits in about 15 minutes on 2 cores; --quick only tries the machinery."""
    rounds = 1 if quick else 0
    ingest_20k = ingest.Plan("20 KB", 20_000, rounds=rounds or 7, seconds=2 if quick else 5, warmup=200, pool=8_000)
    ingest_2m = ingest.Plan("2 MB", 2_000_000, rounds=rounds or 3, seconds=2 if quick else 6, warmup=16, pool=600)
    return {"ingest": lambda scratch: ingest.run([ingest_20k, ingest_2m], scratch, log),
            "memory": lambda scratch: memory.run(200_000_000, rounds or 3, scratch, log),
            "reconcile": lambda scratch: reconcile.run(200 if quick else 1_000, rounds or 3, scratch, log),
            "submission": lambda scratch: submission.run(40 if quick else 200, rounds or 3, scratch, log),
            "history": lambda scratch: history.run([1_000, 10_000] if quick else [1_000, 100_000, 1_000_000],
                                                   rounds or 5, scratch, log),
            "s3": lambda scratch: s3.run({"ingest": ingest.Plan("20 KB", 20_000, rounds=rounds or 5,
                                                                 seconds=2 if quick else 5, warmup=200, pool=8_000),
                                          "memory": {"size": 200_000_000, "rounds": rounds or 3}}, scratch, log)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write docs/benchmarks-results.md.")
    parser.add_argument("--quick", action="store_true", help="one short round of each (not for committing)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest.json"
    results = {**(json.loads(latest.read_text()) if latest.is_file() else {}),
               "machine": machine.describe(), "quick": args.quick}
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=RESULTS))
    started, runs = time.monotonic(), plan(args.quick)
    try:
        for name in args.only:
            log(f"{name}: starting")
            results[name] = runs[name](scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"].update(load_after=machine.load_average(), minutes=(time.monotonic() - started) / 60)
    text = json.dumps(results)
    (RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text)
    latest.write_text(text)
    if set(args.only) - set(OWN_PAGES):
        report.write(results)
    for name, write in OWN_PAGES.items():
        if name in args.only:
            write(results)
    log(f"done in {results['machine']['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
