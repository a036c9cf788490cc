"""The one picture of docs/benchmarks-results.md: webhook ingest of 20 KB notifications, ours against the baselines.

Left, throughput as a fraction of the limit's, against the 0.8 goal (the bare endpoint runs off the
scale); right, the
latency distribution of every measured request of every round, on a log scale, with the 300 ms goal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: `make bench` runs headless
import matplotlib.pyplot as plt

from bench.stats import median, spread

STYLE = {  # label, colour, line style
    "ours": ("ours (server.py, sqlite)", "#1f77b4", "-"),
    "ours-postgresql": ("ours (server.py, PostgreSQL)", "#9467bd", "-"),
    "lean": ("limit: lean WSGI handler", "#2ca02c", "-"),
    "bare": ("bare Flask endpoint", "#7f7f7f", "-"),
    "ours-ijson.items": ("diagnostic: ours + ijson.items parse", "#ff7f0e", "--"),
    "ours-no-dir-fsync": ("diagnostic: ours without directory fsync", "#8c564b", ":"),
}
P99_GOAL_MS = 300
RATIO_GOAL = 0.8


def draw(plan: dict[str, Any], path: Path) -> None:
    runs = plan["runs"]
    names = [name for name in STYLE if name in runs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.35]})
    throughput(left, runs, names)
    latency(right, runs, names)
    size = plan["plan"]["label"]
    figure.suptitle(f"Webhook ingest, {size} json-v2 notifications, 16 concurrent senders, 2 cores", fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def throughput(axes: Any, runs: dict[str, list[dict[str, Any]]], names: list[str]) -> None:
    """Each target's median rate as a fraction of the limit's, whiskers from its slowest to fastest round."""
    rates = {name: [run["per_second"] for run in runs[name]] for name in names}
    limit = median(rates["lean"])
    ratios = [median(rates[name]) / limit for name in names]
    ranges = [tuple(value / limit for value in spread(rates[name])) for name in names]
    right = max(RATIO_GOAL, *(high for name, (_, high) in zip(names, ranges, strict=True) if name != "bare")) * 1.45
    positions = list(range(len(names)))
    axes.barh(positions, [min(value, right) for value in ratios], color=[STYLE[name][1] for name in names])
    for position, ratio, (low, high), name in zip(positions, ratios, ranges, names, strict=True):
        if high < right:
            axes.plot([low, high], [position, position], color="black", linewidth=1)
        note = f"{ratio:.2f}  ({median(rates[name]):.0f}/s)" + ("  >" if ratio > right else "")
        axes.text(min(high, right * 0.72), position - 0.3, note, fontsize=8, va="center")
    axes.axvline(RATIO_GOAL, color="#d62728", linestyle=":", linewidth=1)
    axes.text(RATIO_GOAL, len(names) - 0.45, " goal 0.8", color="#d62728", fontsize=8)
    axes.set_yticks(positions, [STYLE[name][0] for name in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, right)
    axes.set_xlabel("notifications per second, as a fraction of the limit's")
    axes.set_title("Throughput (median of rounds; line: slowest to fastest round)", fontsize=10)


def latency(axes: Any, runs: dict[str, list[dict[str, Any]]], names: list[str]) -> None:
    for name in names:
        values = sorted(value for run in runs[name] for value in run["latencies_ms"])
        if not values:
            continue
        fractions = [(index + 1) / len(values) * 100 for index in range(len(values))]
        label, colour, line = STYLE[name]
        axes.plot(values, fractions, line, color=colour, label=label, linewidth=1.6)
    axes.axvline(P99_GOAL_MS, color="#d62728", linestyle=":", linewidth=1)
    axes.axhline(99, color="#bbbbbb", linestyle=":", linewidth=1)
    axes.text(P99_GOAL_MS, 55, "p99 goal\n300 ms ", color="#d62728", fontsize=8, ha="right")
    axes.set_xscale("log")
    axes.set_ylim(0, 100.5)
    axes.set_xlabel("latency per notification, ms (log scale)")
    axes.set_ylabel("% of notifications answered within")
    axes.set_title("Latency distribution (all rounds)", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(True, which="both", alpha=0.25)
