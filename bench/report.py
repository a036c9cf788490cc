"""The pages docs/benchmarks-*.md (and the history's figure), rendered from the raw results of `python -m bench`.

Only measurements: the method, the goals and what the numbers mean for them are written by hand in
docs/benchmarks.md. Every table has one row per target and one column per figure: a median over the rounds
with the rounds' range beside it, a worst case, or a total.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import ROOT

GUARD, GUARDED_SIZE = 0.5, 20_000  # at 20 KB, server.py keeps at least half the lean handler's throughput
NAMES = {"ours": "ours: `python server.py`, sqlite", "ours-postgresql": "ours: `python server.py`, PostgreSQL",
         "lean": "lean durable handler (`bench/lean_app.py`)", "ours-s3": "ours, `TRANSCRIPTS_URL` (S3)",
         "cronjob": "`python cronjob.py --all`", "client": "`python client.py`",
         "ours-handoff": "ours, `HANDOFF_URL` (the server delivering)"}
HISTORY = (("seconds", "idle pass, wall time, s"), ("cpu_seconds", "idle pass, CPU time, s"),
           ("peak_mb", "idle pass, peak RSS, MB"), ("list_seconds", "`client.py --list`, s"),
           ("notification_ms", "one notification, ms"), ("bytes_per_job", "database, bytes a job"))
Runs = list[dict[str, Any]]
Column = tuple[str, Callable[[Runs], str]]


def median(values: Sequence[float]) -> float:
    """Over rounds, ignoring a round that measured nothing (nan)."""
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def middle(key: str, digits: int = 0) -> Callable[[Runs], str]:
    """A column: the median of one figure over the rounds, with the rounds' range beside it."""
    def cell(runs: Runs) -> str:
        values = [run[key] for run in runs if run.get(key) is not None]
        if not values:
            return "—"
        return f"{number(median(values), digits)} ({number(min(values), digits)}-{number(max(values), digits)})"
    return cell


def over(key: str, combine: Callable[[Iterable[Any]], Any]) -> Callable[[Runs], str]:
    """A column: one figure of every round combined (max, min or sum)."""
    return lambda runs: str(combine(run[key] for run in runs))


def section(title: str, text: str, runs: dict[str, Runs], columns: list[Column]) -> list[str]:
    """A heading, what ran (`text`, then the number of rounds), and a table of one row per target."""
    return [title, "", f"{text}; {len(next(iter(runs.values())))} rounds.", "",
            *table(["target", *(header for header, _ in columns)],
                   [[NAMES[name], *(cell(own) for _, cell in columns)] for name, own in runs.items()])]


def rate(runs: Runs) -> float:
    return median([run["per_second"] for run in runs])


def ingest_columns(runs: dict[str, Runs], base: str) -> list[Column]:
    """"of <base>" is the ratio of a target's median rate to the base target's, in the same rounds."""
    return [("notifications/s (range)", middle("per_second")),
            (f"of {base}", lambda own: number(rate(own) / rate(runs[base]), 2)),
            ("p50 ms", middle("p50_ms", 1)), ("p99 ms", middle("p99_ms", 1)), ("non-200", over("errors", sum)),
            ("stored/200", lambda own: f"{sum(run['stored'] for run in own)}/"
                                       f"{sum(run['statuses'].get('200', 0) for run in own)}")]


def ingest_section(part: dict[str, Any]) -> list[str]:
    lines = ["## Webhook ingest", ""]
    if part["postgresql_skipped"]:
        lines += [f"PostgreSQL was not measured: {part['postgresql_skipped']}.", ""]
    for label, entry in part["plans"].items():
        plan, runs = entry["plan"], entry["runs"]
        lines += section(f"### {label} bodies", f"{plan['seconds']:g} s per run, {plan['concurrency']} senders",
                         runs, ingest_columns(runs, "lean"))
        if plan["size"] == GUARDED_SIZE:
            guards = {name: rate(own) / rate(runs["lean"]) for name, own in runs.items() if name != "lean"}
            lines += [f"The guard, at least {GUARD} of the lean handler: " + "; ".join(
                f"{NAMES[name]} **{number(guard, 2)}** ({'met' if guard >= GUARD else 'NOT MET'})"
                for name, guard in guards.items()) + ".", ""]
    return lines


def memory_section(part: dict[str, Any], title: str = "## Memory") -> list[str]:
    return section(title, f"One {part['size'] / 1e6:.0f} MB json-v2 transcript in one request with a "
                   "Content-Length", part["runs"], [
                       ("handling worker's peak above idle, MB", middle("peak_above_idle_mb", 1)),
                       ("server idle, MB (all processes)", middle("idle_mb", 1)),
                       ("answers", lambda own: ", ".join(run["status"] for run in own)),
                       ("stored", lambda own: f"{sum(run['stored'] for run in own)}/{len(own)}")])


def reconcile_section(part: dict[str, Any]) -> list[str]:
    return section("## Reconcile", f"Recovering {part['jobs']:,} jobs whose notifications were all lost, "
                   f"{part['latency_ms']} ms added to every API answer, the API's limit of 50 reads per second on",
                   part["runs"], [("seconds", middle("seconds", 1)), ("reads/s", middle("per_second", 1)),
                                  ("peak reads in 1 s", over("peak", max)),
                                  ("calls per recovered job", middle("calls_per_job", 2)),
                                  ("recovered", over("recovered", min)), ("429s", over("rate_limited", sum))])


def submission_section(part: dict[str, Any]) -> list[str]:
    return section("## Submission", f"{part['files']} copies of `example.wav`, the API's limit of 10 job "
                   "creations per second on", part["runs"], [
                       ("jobs/s while submitting", middle("per_second", 2)), ("peak jobs in 1 s", over("peak", max)),
                       ("429s", over("rate_limited", sum)), ("submitted", over("requests", min))])


def s3_section(part: dict[str, Any]) -> list[str]:
    plan, runs = part["ingest"]["plan"], part["ingest"]["runs"]
    return [*section("## Webhook ingest", f"Store: {part['store']}. {plan['label']} bodies, {plan['seconds']:g} s "
                     f"per run, {plan['concurrency']} senders; *of ours* is of `ours` on local disk", runs,
                     ingest_columns(runs, "ours")), *memory_section(part["memory"], "## Memory, into S3")]


def handoff_section(part: dict[str, Any]) -> list[str]:
    """Notification to hand-off with the server delivering, and what handing on adds to the answer."""
    return section("## Hand-off", "`ours-handoff` hands each finished job to a consumer on loopback "
                   "(HANDOFF_URL); *hand-off* runs from a notification's sending to its event's arrival (what it "
                   "costs at full load: the ingest table of [benchmarks-results.md](benchmarks-results.md)). "
                   f"{part['jobs']} notifications (20 KB) per run from {part['concurrency']} senders, "
                   f"{part['rate']:g} a second, medians over rounds", part["runs"], [
                       ("answer p50 (ms)", middle("p50_ms", 1)), ("answer p99 (ms)", middle("p99_ms", 1)),
                       ("hand-off p50 (ms)", middle("handoff_p50_ms", 1)),
                       ("hand-off p99 (ms)", middle("handoff_p99_ms", 1)), ("handed on", over("handed_on", sum))])


def history_section(part: dict[str, Any]) -> list[str]:
    lines = ["![Cost against history size](benchmarks-history.png)", "",
             f"An idle `cronjob.py --all` pass with N `done` jobs kept, each with its transcript file, "
             f"{part['pass_interval'] // 60} minutes (by the database's clock) after the previous pass: wall and CPU "
             f"time (medians of {part['rounds']} runs) and the kernel's peak RSS (the largest), interpreter "
             f"start-up included; `client.py --list` (median of {part['rounds']} runs); one 20 KB notification at "
             "a time to `python server.py` (median latency). The method is in [benchmarks.md](benchmarks.md).", ""]
    for backend, rows in part["backends"].items():
        lines += [f"## {backend}", ""]
        if "skipped" in rows:
            lines += [f"Not measured: {rows['skipped']}.", ""]
            continue
        sizes = [str(size) for size in part["sizes"] if str(size) in rows]
        body = [[f"{int(size):,}", *(number(rows[size][key], 2) for key, _ in HISTORY)] for size in sizes]
        ratio = [number(rows[sizes[-1]][key] / rows[sizes[0]][key], 2) + "x" for key, _ in HISTORY]
        lines += table(["finished jobs", *(label for _, label in HISTORY)],
                       [*body, ["**largest to smallest**", *ratio]])
    return lines


def history_figure(part: dict[str, Any]) -> None:
    """One panel per measure, one line per backend, sizes on a log scale."""
    figure, axes = plt.subplots(1, len(HISTORY), figsize=(3 * len(HISTORY), 3.6))
    for axis, (key, label) in zip(axes, HISTORY, strict=True):
        for backend, rows in part["backends"].items():
            sizes = [size for size in part["sizes"] if str(size) in rows]
            axis.plot(sizes, [rows[str(size)][key] for size in sizes], "o-", label=backend)
        axis.set(xscale="log", xlabel="finished jobs kept (log scale)", ylim=(0, None))
        axis.set_title(label, fontsize=9)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Cost against history size (flat is the goal)", fontsize=11)
    figure.tight_layout()
    figure.savefig(ROOT / "docs" / "benchmarks-history.png", dpi=100)
    plt.close(figure)


def heading(results: dict[str, Any], title: str, command: str) -> list[str]:
    machine = results["machine"]
    lines = [f"# {title}", "", f"Generated by `{command}` on {machine['date']} from commit `{machine['commit']}`"
             + (" (with uncommitted changes to the scripts)" if machine.get("dirty") else "")
             + f", in {machine.get('minutes', 0):.0f} minutes. Do not edit: `bench/report.py` writes it from "
             "`bench/results/latest.json`; the method and the goals are in [benchmarks.md](benchmarks.md).", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['system']}; Python {machine['python']}, "
             f"sqlite {machine['sqlite']}. Load average (1, 5, 15 min): {machine['load_before']} "
             f"before, {machine.get('load_after', '?')} after.", ""]
    if results.get("quick"):
        lines += ["> **Quick run** (`python -m bench --quick`): one short round each. Not for drawing conclusions.", ""]
    return lines


PAGES = {ROOT / "docs" / "benchmarks-results.md": ("Benchmark results", "make bench", {
             "ingest": ingest_section, "memory": memory_section, "reconcile": reconcile_section,
             "submission": submission_section}),
         ROOT / "docs" / "benchmarks-s3.md": ("Benchmark results: transcripts in S3", "python -m bench --only s3",
                                              {"s3": s3_section}),
         ROOT / "docs" / "benchmarks-handoff.md": ("Benchmark results: the hand-off", "python -m bench --only handoff",
                                                   {"handoff": handoff_section}),
         ROOT / "docs" / "benchmarks-history.md": ("Benchmark results: cost against history",
                                                   "python -m bench --only history", {"history": history_section})}


def write(results: dict[str, Any], ran: Iterable[str]) -> None:
    """Every page showing a benchmark that ran; the others keep what they show (results this machine lacks)."""
    for path, (title, command, sections) in PAGES.items():
        if set(sections) & set(ran):
            lines = heading(results, title, command)
            for name, render in sections.items():
                lines += render(results[name]) if name in results else []
            path.write_text("\n".join(lines).rstrip() + "\n")
    if "history" in ran:
        history_figure(results["history"])

