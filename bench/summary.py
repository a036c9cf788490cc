"""Raw runs into the figures the report shows: medians over rounds, ranges, and ratios of medians.

A ratio between two targets is the ratio of their medians over the same interleaved rounds, so the table's
"of limit" column and every ratio quoted in the text are the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

from bench.stats import median, percentile, spread
from bench.targets import DIAGNOSTICS

MB = 1024


def ingest_target(runs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    rates = [run["per_second"] for run in runs]
    answered = sum(run["all_statuses"].get("200", 0) for run in runs)
    stored = [run["stored"] for run in runs]
    return {"rate": median(rates), "range": spread(rates), "p50": median([run["p50_ms"] for run in runs]),
            "cpu_ms": median([run["cpu_ms_per_request"] for run in runs]),
            "cores_busy": median([run["cpu_ms_per_request"] * run["per_second"] / 1000 for run in runs]),
            "loadgen_cpu_ms": median([run["loadgen_cpu_ms_per_request"] for run in runs]),
            "p99": median([run["p99_ms"] for run in runs]), "worst_p99": max(run["p99_ms"] for run in runs),
            "errors": sum(run["errors"] for run in runs), "statuses": merged_statuses(runs),
            "answered": answered, "stored": None if None in stored else sum(stored), "rounds": len(runs),
            "short_runs": sum(1 for run in runs if run["seconds"] < 0.9 * seconds)}


def merged_statuses(runs: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for run in runs:
        for status, count in run["all_statuses"].items():
            merged[status] = merged.get(status, 0) + count
    return merged


def ratio(runs: dict[str, list[dict[str, Any]]], top: str, bottom: str, key: str = "per_second") -> float:
    """Median of top's runs over median of bottom's: notifications per second, or another per-run figure."""
    if top not in runs or bottom not in runs:
        return math.nan
    below = median([run[key] for run in runs[bottom]])
    return median([run[key] for run in runs[top]]) / below if below else math.nan


def ingest(result: dict[str, Any]) -> dict[str, Any]:
    summary = {}
    for label, entry in result["plans"].items():
        runs, seconds = entry["runs"], entry["plan"]["seconds"]
        summary[label] = {"plan": entry["plan"],
                          "targets": {name: ingest_target(r, seconds) for name, r in runs.items()},
                          "to_limit": ratio(runs, "ours", "lean"), "to_bare": ratio(runs, "ours", "bare"),
                          "cpu_to_limit": ratio(runs, "lean", "ours", key="cpu_ms_per_request"),
                          "limit_to_bare": ratio(runs, "lean", "bare"),
                          "postgresql_to_sqlite": ratio(runs, "ours-postgresql", "ours"),
                          "postgresql_to_limit": ratio(runs, "ours-postgresql", "lean"),
                          "diagnostics": {name: {"to_limit": ratio(runs, name, "lean"),
                                                 "to_ours": ratio(runs, name, "ours")}
                                          for name in DIAGNOSTICS if name in runs}}
    return summary


def memory(result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    return {"body_mb": median([run["body_bytes"] / MB / MB for run in runs]),
            "idle_mb": median([run["idle_rss_kb"] / MB for run in runs]),
            "peak_mb": median([run["peak_rss_kb"] / MB for run in runs]),
            "delta_mb": median([run["delta_kb"] / MB for run in runs]),
            "worst_delta_mb": max(run["delta_kb"] / MB for run in runs),
            "worker_delta_mb": median([run["worker_hwm_delta_kb"] / MB for run in runs]),
            "seconds": median([run["seconds"] for run in runs]), "statuses": [run["status"] for run in runs],
            "stored": sum(run["stored"] for run in runs), "rounds": len(runs)}


def reconcile_script(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_job = [run["calls_per_job"] for run in runs if run["calls_per_job"] is not None]
    return {"seconds": median([run["seconds"] for run in runs]),
            "reads_per_second": median([run["reads_per_second"] for run in runs]),
            "reads_range": spread([run["reads_per_second"] for run in runs]),
            "peak": max(run["max_gets_per_second"] for run in runs),
            "calls_per_job": median(per_job) if per_job else None,
            "calls_per_checked_job": median([run["calls_per_checked_job"] for run in runs]),
            "recovered": median([run["recovered"] for run in runs]),
            "marked_done": median([run["marked_done"] for run in runs]),
            "rate_limited": sum(run["rate_limited"] for run in runs),
            "exits": sorted({run["exit"] for run in runs}), "rounds": len(runs)}


def reconcile(result: dict[str, Any]) -> dict[str, Any]:
    scripts = {name: reconcile_script(runs) for name, runs in result["runs"].items()}
    ours, loop = scripts.get("cronjob.py"), scripts.get("original loop")
    speedup = loop["seconds"] / ours["seconds"] if ours and loop else math.nan
    return {"jobs": result["jobs"], "latency_ms": result["latency_ms"], "scripts": scripts, "speedup": speedup}


def submission(result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    pooled = [value for run in runs for value in run["e2e_ms"]]
    return {"files": result["files"], "jobs_per_second": median([run["jobs_per_second"] for run in runs]),
            "range": spread([run["jobs_per_second"] for run in runs]),
            "wall_jobs_per_second": median([run["jobs_per_second_wall"] for run in runs]),
            "peak": max(run["max_posts_per_second"] for run in runs),
            "rate_limited": sum(run["rate_limited"] for run in runs),
            "exits": sorted({run["exit"] for run in runs}), "submitted": min(run["submitted"] for run in runs),
            "e2e_p50": median([run["e2e_p50_ms"] for run in runs]),
            "e2e_p99": median([run["e2e_p99_ms"] for run in runs]),
            "e2e_pooled_p99": percentile(pooled, 0.99), "e2e_max": max(pooled) if pooled else math.nan,
            "stored": min(run["stored"] for run in runs), "rounds": len(runs)}
