"""The goals of the benchmark issue, each checked against the summary, with the distance when missed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    key: str
    what: str
    measured: str
    target: str
    met: bool | None  # None: could not be measured in this run
    shortfall: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else f"**missed** ({self.shortfall})"


def at_least(key: str, what: str, value: float | None, goal: float, unit: str, digits: int = 2) -> Goal:
    if value is None or math.isnan(value):
        return Goal(key, what, "—", f"≥ {goal:g}{unit}", None)
    short = goal - value
    shown = digits if short <= 0 or short >= 10 ** -digits else digits + 1  # never "0.80, short by 0.00"
    return Goal(key, what, f"{value:.{shown}f}{unit}", f"≥ {goal:g}{unit}", value >= goal,
                f"short by {short:.{shown}f}{unit}, {short / goal:.1%} of the goal")


def at_most(key: str, what: str, value: float | None, goal: float, unit: str, digits: int = 2) -> Goal:
    if value is None or math.isnan(value):
        return Goal(key, what, "—", f"≤ {goal:g}{unit}", None)
    over = value - goal
    relative = f", {over / goal:.0%} of the goal" if goal else ""
    return Goal(key, what, f"{value:.{digits}f}{unit}", f"≤ {goal:g}{unit}", value <= goal,
                f"over by {over:.{digits}f}{unit}{relative}")


def below(key: str, what: str, value: float | None, goal: float, unit: str, digits: int = 1) -> Goal:
    goal_met = at_most(key, what, value, goal, unit, digits)
    return Goal(key, what, goal_met.measured, f"< {goal:g}{unit}", goal_met.met and value != goal,
                goal_met.shortfall)


def evaluate(summary: dict[str, Any]) -> list[Goal]:
    goals: list[Goal] = []
    small = summary.get("ingest", {}).get("20 KB")
    if small:
        ours = small["targets"]["ours"]
        goals += [at_least("ingest_ratio", "Webhook ingest 20 KB: throughput / limit", small["to_limit"], 0.8, ""),
                  at_most("ingest_errors", "Webhook ingest 20 KB: non-200 answers", ours["errors"], 0, "", 0),
                  below("ingest_p99", "Webhook ingest 20 KB: p99 latency", ours["p99"], 300, " ms")]
    if "memory" in summary:
        goals.append(below("memory", "Memory: peak RSS above idle, 200 MB body", summary["memory"]["delta_mb"],
                           50, " MB"))
    cron = summary.get("reconcile", {}).get("scripts", {}).get("cronjob.py")
    if cron:
        goals += [at_least("reads_rate", "Reconcile: reads per second", cron["reads_per_second"], 45, "", 1),
                  at_most("reads_peak", "Reconcile: peak reads in any 1 s", cron["peak"], 50, "", 0),
                  at_most("calls_per_job", "Reconcile: API calls per recovered job", cron["calls_per_job"], 1.1, "")]
    sub = summary.get("submission")
    if sub:
        goals += [at_least("submit_rate", "Submission: jobs per second", sub["jobs_per_second"], 9, "", 2),
                  at_most("submit_peak", "Submission: peak jobs in any 1 s", sub["peak"], 10, "", 0)]
    return goals
