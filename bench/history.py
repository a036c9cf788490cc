"""History: what routine work costs as the finished jobs kept grow from 1,000 to 1,000,000.

For each backend and size, a fresh database holds that many `done` jobs, created one every 0.1 s back from
now (the API's limit of 10 jobs a second, so every one is inside the 7-day retention window the repair
sweep covers), each with its `<job_id>.json` (hard links of a few files, made once for the largest size and
shared), and its file last checked at a moment spread over the last recheck period, in shuffled order (as
passes every five minutes leave it). Rows are written with one bulk insert (sqlite) or COPY (PostgreSQL).
Then, each as its own process the way a user runs it:

- **idle pass**: `cronjob.py --all` with nothing to reconcile, five minutes (by the database's clock) after
  the previous pass: its wall time and peak RSS (the kernel's, from wait4). Several rounds; the median.
- **notification**: `server.py` receives 20 KB notifications for `running` jobs, one at a time; the median
  latency over the rounds' requests.
- **`client.py --list`**: the default listing (the newest 50), its wall time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from bench import jobrows, targets
from bench.bodies import ROOT, template
from bench.stats import median
from emulator import Emulator, EmulatorOptions
from notification_flow.auth import job_token
from notification_flow.jobs import open_store
from notification_flow.reconcile import ReconcilePolicy

API_KEY = "bench-api-key"
SPACING = 0.1  # seconds between two jobs' creation: the API's limit of 10 a second
PASS_INTERVAL = 300  # the cron interval the README suggests
NOTIFIED = 40  # running jobs notified per size and backend
RECHECK = ReconcilePolicy().recheck_seconds


def run(sizes: list[int], rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    files = Path(tempfile.mkdtemp(prefix="history-files-", dir=scratch))
    link_transcripts(files, max(sizes))
    backends = {"sqlite": None, "postgresql": jobrows.postgres_problem()}
    results: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "spacing": SPACING,
                               "pass_interval": PASS_INTERVAL, "backends": {}}
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, seed=1)
    try:
        with Emulator(options) as emulator:
            for backend, problem in backends.items():
                if problem:
                    results["backends"][backend] = {"skipped": problem}
                    log(f"history {backend}: skipped: {problem}")
                    continue
                rows = results["backends"][backend] = {}
                for size in sizes:
                    with database(backend, scratch) as url:
                        rows[str(size)] = measure(url, size, rounds, files, emulator, scratch, log, backend)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return results


@contextlib.contextmanager
def database(backend: str, scratch: Path) -> Iterator[str]:
    if backend == "postgresql":
        with jobrows.fresh_schema("history") as url:
            yield url
        return
    work = Path(tempfile.mkdtemp(prefix="history-db-", dir=scratch))
    try:
        yield f"sqlite:///{work / 'jobs.db'}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def job_id(number: int) -> str:
    return f"hist{number:08d}"


def link_transcripts(directory: Path, count: int, per_file: int = 60_000) -> None:
    """`count` transcripts, hard links of a few files (ext4 allows 65,000 links to one): a million in seconds."""
    body = template(2_000).body(job_id(0))
    for number in range(count):
        if number % per_file == 0:
            original = directory / f".original-{number // per_file}.json"
            original.write_bytes(body)
        os.link(original, directory / f"{job_id(number)}.json")


def seed(url: str, count: int, files: Path) -> float:
    """`count` done jobs, newest first one every SPACING seconds back from now; the seconds it took."""
    started = time.monotonic()
    store = open_store(url)
    now = store.now()

    def rows() -> Iterator[tuple[Any, ...]]:
        for number in range(count):
            moment = now - 60 - number * SPACING
            checked = now - RECHECK * ((number * 7919) % count) / count
            yield (f"{number:032x}", job_id(number), f"call-{number}.wav", "done",
                   str(files / f"{job_id(number)}.json"), moment, moment + 30, checked)

    columns = "reference, job_id, audio, status, transcript, created_at, updated_at, checked_at"
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO jobs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())  # noqa: S608
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a week of traffic would have left it
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cursor, cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
            # As a week of traffic would have left it: autovacuum has marked the pages all-visible (an index-only
            # scan then reads no table page), and the load's dirty pages are on disk, not flushed during a measure.
            conn.execute("VACUUM ANALYZE jobs")
            conn.execute("CHECKPOINT")
    return time.monotonic() - started


def add_running(url: str, count: int) -> list[str]:
    ids = jobrows.new_ids(count)
    store = open_store(url)
    with store.database.transaction() as tx:
        now = tx.now()
        for running_id in ids:
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, created_at, updated_at) VALUES "
                       "($1, $2, 'n.wav', 'running', $3, $3)", jobrows.reference_for(running_id), running_id, now)
    return ids


def database_bytes(url: str) -> int:
    """What the database takes on disk: sqlite's file and its WAL; PostgreSQL's tables of this schema with
    their indexes and TOAST."""
    if url.startswith("sqlite"):
        path = Path(url[len("sqlite:///"):])
        return sum(file.stat().st_size for file in (path, Path(f"{path}-wal")) if file.exists())
    with open_store(url).database.transaction(write=False) as tx:
        rows = tx.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS size FROM pg_class c JOIN "
                          "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND "
                          "c.relkind = 'r'")
    return int(rows[0]["size"])


def age_last_pass(url: str, seconds: float) -> None:
    """Time passing, by the database's clock: `seconds` after the first pass, the checks seeded that would have
    fallen due by then are made to look that much older (one index range, not the history). Those of earlier
    rounds have been checked since, so each round makes one more interval's worth due."""
    with open_store(url).database.transaction() as tx:
        tx.execute("UPDATE jobs SET checked_at = checked_at - $1 WHERE status = 'done' AND checked_at < $2",
                   seconds, tx.now() - RECHECK + seconds)


def timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time, CPU time and the kernel's peak RSS of one process, started through `bench.rss` so that the
    figures are the command's own, not this benchmark's inherited across the fork. CPU time is the steadier
    measure of cost on a shared machine, where wall time also counts waiting for a core."""
    with tempfile.NamedTemporaryFile(prefix="rss-") as peak:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "bench.rss", peak.name, sys.executable, *command], env=env,
                                cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        peak_kb, cpu_seconds = Path(peak.name).read_text().split()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    return {"seconds": seconds, "cpu_seconds": float(cpu_seconds), "peak_mb": int(peak_kb) / 1024,
            "stdout": result.stdout, "stderr": result.stderr}


def measure(url: str, size: int, rounds: int, files: Path, emulator: Emulator, scratch: Path,
            log: Callable[[str], None], backend: str) -> dict[str, Any]:
    seeded = seed(url, size, files)
    work = Path(tempfile.mkdtemp(prefix="history-run-", dir=scratch))
    try:
        env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                                DATABASE_URL=url, TRANSCRIPTS_DIR=str(files))
        cron = [str(ROOT / "cronjob.py"), "--all"]
        timed(cron, env)  # the first pass: what is due now, as a pass every five minutes would have left it
        passes = []
        for number in range(1, rounds + 1):
            age_last_pass(url, number * PASS_INTERVAL)
            passes.append(timed(cron, env))
        listings = [timed([str(ROOT / "client.py"), "--list"], env) for _ in range(rounds)]
        assert len(listings[0]["stdout"].splitlines()) == 52, listings[0]["stdout"][-500:]  # header, 50, "more"
        latencies = notify(url, work, files, rounds)
        size_bytes = database_bytes(url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"seed_seconds": seeded, "pass_seconds": median([p["seconds"] for p in passes]),
              "pass_seconds_all": [p["seconds"] for p in passes],
              "pass_cpu_seconds": median([p["cpu_seconds"] for p in passes]),
              "pass_peak_mb": max(p["peak_mb"] for p in passes),
              "pass_summary": passes[-1]["stdout"].strip(), "pass_checked": checked(passes[-1]["stderr"]),
              "list_seconds": median([p["seconds"] for p in listings]),
              "list_peak_mb": max(p["peak_mb"] for p in listings),
              "notify_ms": median(latencies), "notify_ms_all": latencies,
              "database_mb": size_bytes / 1e6, "bytes_per_job": size_bytes / size}
    log(f"history {backend} {size:,}: seeded in {seeded:.1f} s; idle pass {result['pass_seconds']:.2f} s, "
        f"{result['pass_peak_mb']:.0f} MB; --list {result['list_seconds']:.2f} s; notification "
        f"{result['notify_ms']:.1f} ms")
    return result


def checked(log: str) -> int | None:
    """How many done jobs the pass's repair sweep checked, from its log line."""
    for line in log.splitlines():
        if "repair sweep: checked " in line:
            return int(line.split("repair sweep: checked ")[1].split()[0])
    return None


def headers(job_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {job_token(targets.SECRET, jobrows.reference_for(job_id))}",
            "Content-Type": "application/json"}


def notify(url: str, work: Path, files: Path, rounds: int) -> list[float]:
    """One notification at a time to `server.py`, each for a `running` job: the latency of each."""
    ids = add_running(url, NOTIFIED * rounds)
    body = template(20_000)
    latencies = []
    server = targets.ours(work, url)
    server.env["TRANSCRIPTS_DIR"] = str(files)
    with targets.running(server), requests.Session() as session:
        for running_id in ids[:5]:  # warm every worker's connection
            session.post(f"{server.url}/webhook", params={"id": running_id, "status": "success"},
                         data=body.body(running_id), headers=headers(running_id), timeout=30).raise_for_status()
        for running_id in ids[5:]:
            started = time.perf_counter()
            answer = session.post(f"{server.url}/webhook", params={"id": running_id, "status": "success"},
                                  data=body.body(running_id), headers=headers(running_id), timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    store = open_store(url)
    assert all(store.find(running_id).status == "done" for running_id in ids)
    for running_id in ids:  # keep the shared transcripts directory to the seeded files
        (files / f"{running_id}.json").unlink(missing_ok=True)
    return latencies
