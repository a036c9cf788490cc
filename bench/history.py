"""History: what an idle `cronjob.py` pass costs as the finished jobs kept grow, and the page that shows it
(docs/benchmarks-history.md with its figure; a page of its own, so `--only history` rewrites nothing else).

For each backend and size, a fresh database holds that many `done` jobs, created one every 0.1 s back from
now (the API's limit of 10 jobs a second, so every one is inside the retention window the repair sweep
covers), each with its `<job_id>.json` (hard links of a few files, made once for the largest size and
shared), and its file last checked at a moment spread over the last recheck period, in shuffled order, as
regular passes leave it. Then `cronjob.py --all`, as a user runs it, with nothing to reconcile, one cron
interval (by the database's clock) after the previous pass: its wall time, CPU time and the kernel's peak
RSS (see PEAK), over several rounds. Then `client.py --list`, and one notification at a time to
`python server.py` for a `running` job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import ROOT, loadgen, targets
from bench.report import heading, median, number, table
from emulator import Emulator, EmulatorOptions
from notification_flow.jobs import open_store
from notification_flow.reconcile import ReconcilePolicy

API_KEY = "bench-api-key"
SPACING = 0.1  # seconds between two jobs' creation: the API's limit of 10 a second
PASS_INTERVAL = 300  # the cron interval the README suggests
RECHECK = ReconcilePolicy().recheck_seconds
DOC, PICTURE = ROOT / "docs" / "benchmarks-history.md", ROOT / "docs" / "benchmarks-history.png"
# A small interpreter of its own starts the command and prints, last, the command's peak RSS in KB and the CPU
# seconds it used (RUSAGE_CHILDREN): a child started straight from this benchmark would inherit the
# benchmark's larger RSS as its starting high-water mark, and the kernel would report that instead.
PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime); sys.exit(code)")
MEASURES = (("seconds", "idle pass, wall time, s"), ("cpu_seconds", "idle pass, CPU time, s"),
            ("peak_mb", "idle pass, peak RSS, MB"), ("list_seconds", "`client.py --list`, s"),
            ("notification_ms", "one notification, ms"))


def run(sizes: list[int], rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    files = Path(tempfile.mkdtemp(prefix="history-files-", dir=scratch))
    link_transcripts(files, max(sizes))
    results: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "backends": {}}
    try:
        with Emulator(EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, seed=1)) as emulator:
            for backend, problem in {"sqlite": None, "postgresql": targets.postgres_problem()}.items():
                rows = results["backends"][backend] = {"skipped": problem} if problem else {}
                for size in [] if problem else sizes:
                    rows[str(size)] = measure(backend, size, rounds, files, emulator.url, scratch)
                    log(f"history {backend} {size:,}: {', '.join(f'{k} {v:.2f}' for k, v in rows[str(size)].items())}")
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return results


def link_transcripts(directory: Path, count: int, per_file: int = 60_000) -> None:
    """`count` transcripts, hard links of a few files (ext4 allows 65,000 links to one): a million in seconds."""
    body = loadgen.template(2_000).body("hist00000000")
    for n in range(count):
        if n % per_file == 0:
            original = directory / f".original-{n // per_file}.json"
            original.write_bytes(body)
        os.link(original, directory / f"hist{n:08d}.json")


def seed(url: str, count: int, files: Path) -> None:
    """`count` done jobs, newest first one every SPACING seconds back from now, in one bulk load; then the
    statistics and the checkpoint a week of traffic would have left."""
    now = open_store(url).now()
    columns = "reference, job_id, audio, status, transcript, created_at, updated_at, checked_at"
    rows = ((f"{n:032x}", f"hist{n:08d}", "call.wav", "done", str(files / f"hist{n:08d}.json"),
             now - 60 - n * SPACING, now - 30 - n * SPACING, now - RECHECK * ((n * 7919) % count) / count)
            for n in range(count))
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO jobs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)  # noqa: S608
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE jobs")  # pages marked all-visible, as autovacuum would have left them
        conn.execute("CHECKPOINT")


def age_last_pass(url: str, seconds: float) -> None:
    """Time passing, by the database's clock: the seeded checks that would have fallen due `seconds` after
    the first pass are made to look that much older (one index range, not the history)."""
    with open_store(url).database.transaction() as tx:
        tx.execute("UPDATE jobs SET checked_at = checked_at - $1 WHERE status = 'done' AND checked_at < $2",
                   seconds, tx.now() - RECHECK + seconds)


def timed(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time, CPU time and the kernel's peak RSS of one process, started through PEAK."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, *command], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    peak_kb, cpu_seconds = done.stdout.split()[-2:]
    return {"seconds": time.monotonic() - started, "cpu_seconds": float(cpu_seconds), "peak_mb": int(peak_kb) / 1024}


def measure(backend: str, size: int, rounds: int, files: Path, api_url: str, scratch: Path) -> dict[str, float]:
    """The idle pass's medians (wall and CPU time) and largest peak RSS over `rounds` passes; then the median
    of `rounds` runs of `client.py --list`, and of one notification's latency (notify)."""
    work = Path(tempfile.mkdtemp(prefix="history-run-", dir=scratch))
    try:
        with (targets.fresh_schema("history") if backend == "postgresql"
              else contextlib.nullcontext(f"sqlite:///{work / 'jobs.db'}")) as url:
            seed(url, size, files)
            env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=api_url,
                                    DATABASE_URL=url, TRANSCRIPTS_DIR=str(files))
            cron = [str(ROOT / "cronjob.py"), "--all"]
            timed(cron, env)  # the first pass: what is due now, as regular passes would have left it
            passes = []
            for round_ in range(1, rounds + 1):
                age_last_pass(url, round_ * PASS_INTERVAL)
                passes.append(timed(cron, env))
            listings = [timed([str(ROOT / "client.py"), "--list"], env)["seconds"] for _ in range(rounds)]
            notification_ms = notify(url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"seconds": median([run["seconds"] for run in passes]),
            "cpu_seconds": median([run["cpu_seconds"] for run in passes]),
            "peak_mb": max(run["peak_mb"] for run in passes), "list_seconds": median(listings),
            "notification_ms": notification_ms}


def notify(url: str, work: Path, count: int = 300) -> float:
    """The median latency of 20 KB notifications sent one at a time to `python server.py`, each for a job the
    database holds as `running`, after a short warm-up."""
    ids = targets.new_ids(count)
    targets.create_running(url, ids)
    with targets.running(targets.ours(work, url)) as server:
        sent = loadgen.measure(server.port, targets.SECRET, ids, 20_000, concurrency=1, warmup=0.3, seconds=120)
    return float(sent["p50_ms"])


def render(results: dict[str, Any]) -> str:
    part = results["history"]
    lines = [*heading(results, "Benchmark results: cost against history", "python -m bench --only history"),
             f"![Cost against history size]({PICTURE.name})", "",
             f"An idle `cronjob.py --all` pass with N `done` jobs kept, each with its transcript file, "
             f"{PASS_INTERVAL // 60} minutes (by the database's clock) after the previous pass: wall and CPU "
             f"time (medians of {part['rounds']} runs) and the kernel's peak RSS (the largest), interpreter "
             f"start-up included; `client.py --list` (median of {part['rounds']} runs); one 20 KB notification at "
             "a time to `python server.py` (median latency). The method is in [benchmarks.md](benchmarks.md).", ""]
    for backend, rows in part["backends"].items():
        lines += [f"## {backend}", ""]
        if "skipped" in rows:
            lines += [f"Not measured: {rows['skipped']}.", ""]
            continue
        sizes = [str(size) for size in part["sizes"] if str(size) in rows]
        body = [[f"{int(size):,}", *(number(rows[size][key], 2) for key, _ in MEASURES)] for size in sizes]
        ratio = [number(rows[sizes[-1]][key] / rows[sizes[0]][key], 2) + "x" for key, _ in MEASURES]
        lines += table(["finished jobs", *(label for _, label in MEASURES)],
                       [*body, ["**largest to smallest**", *ratio]])
    return "\n".join(lines).rstrip() + "\n"


def write(results: dict[str, Any]) -> None:
    """The page and its figure: one panel per measure, one line per backend, sizes on a log scale."""
    DOC.write_text(render(results))
    part = results["history"]
    figure, axes = plt.subplots(1, len(MEASURES), figsize=(3 * len(MEASURES), 3.6))
    for axis, (key, label) in zip(axes, MEASURES, strict=True):
        for backend, rows in part["backends"].items():
            sizes = [size for size in part["sizes"] if str(size) in rows]
            axis.plot(sizes, [rows[str(size)][key] for size in sizes], "o-", label=backend)
        axis.set(xscale="log", xlabel="finished jobs kept (log scale)", ylim=(0, None))
        axis.set_title(label, fontsize=9)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Cost against history size (flat is the goal)", fontsize=11)
    figure.tight_layout()
    figure.savefig(PICTURE, dpi=100)
    plt.close(figure)
