"""cronjob.py and client.py, each run as a user runs it against a fresh emulator: at the API's rate limits
(`reconcile`, `submission`), and against the size of the history kept (`history`).

- **reconcile**: `count` jobs finished at the emulator with every notification dropped, and `running` in a
  fresh database; then 50 ms of latency on every API answer and the documented limits on (50 reads, 10
  submissions a second), and `python cronjob.py --all` recovers them.
- **submission**: `python client.py call-000.wav …` with the limit of 10 job creations a second on; the
  emulator drops every notification: this measures submitting, not receiving.
- **history**: for each backend and size, a fresh database holds that many `done` jobs, one every 0.1 s back
  from now (the API's limit of 10 a second: all inside the retention window the repair sweep covers), each
  with its `<job_id>.json` (hard links of a few files, made once and shared), last checked as passes leave
  it (the pass after the job finished, then once each recheck period: jobs due together finished together).
  Then `cronjob.py --all` with nothing to reconcile, one cron interval (by the database's clock) after the
  previous pass: wall time, CPU time and the kernel's peak RSS (see PEAK) over several rounds; then
  `client.py --list`, and one notification at a time to `python server.py` for a `running` job. Its page
  (docs/benchmarks-history.md, with a figure) is its own, so `--only history` rewrites nothing else.

Requests per second are counted over the window in which the emulator's count of them moved, polled while
the script runs, so the interpreter's start-up is not counted as time the API was idle; the peak is the
emulator's own largest count in any 1 s window.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench import ROOT, RUNTIME_PYTHON, loadgen, targets
from bench.report import median
from emulator import Emulator, EmulatorOptions
from notification_flow.jobs import open_store
from notification_flow.reconcile import ReconcilePolicy

API_KEY = "bench-api-key"
LATENCY_MS = 50
SPACING = 0.1  # seconds between two jobs' creation: the API's limit of 10 a second
PASS_INTERVAL = 300  # the cron interval the README suggests
RECHECK = ReconcilePolicy().recheck_seconds
# An interpreter of its own runs the command, then prints its peak RSS (KB) and CPU seconds (RUSAGE_CHILDREN): a
# child of this benchmark would inherit the benchmark's larger RSS as its high-water mark, and report that.
PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime); sys.exit(code)")


def reconcile(count: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs = targets.rounds("reconcile", rounds, {"cronjob": lambda work: recover(count, work)}, scratch, log)
    return {"jobs": count, "latency_ms": LATENCY_MS, "runs": runs}


def submission(files: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    return {"files": files, "runs": targets.rounds("submission", rounds,
                                                   {"client": lambda work: submit(files, work)}, scratch, log)}


def recover(count: int, work: Path) -> dict[str, Any]:
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, drop_fraction=1.0, seed=1,
                              rate_limit_post_per_second=0, rate_limit_get_per_second=0)
    with Emulator(options) as emulator:
        jobs = finished_jobs(emulator, count)
        url = f"sqlite:///{work / 'jobs.db'}"
        store = targets.create_running(url, list(jobs), references=list(jobs.values()))
        emulator.set_faults(api_latency_ms=LATENCY_MS, rate_limit_get_per_second=50, rate_limit_post_per_second=10)
        calls = api_requests(emulator)
        env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                                DATABASE_URL=url, TRANSCRIPTS_DIR=str(work / "transcripts"))
        result = watch(emulator, "GET", [str(ROOT / "cronjob.py"), "--all"], env, work)
        calls, stats = api_requests(emulator) - calls, emulator.stats()
    recovered = sum(1 for job in store.jobs(status="done") if (work / "transcripts" / f"{job.job_id}.json").is_file())
    return {**result, "peak": stats["max_gets_per_second"], "rate_limited": stats["rate_limited_get"],
            "recovered": recovered, "calls_per_job": calls / recovered if recovered else None}


def submit(files: int, work: Path) -> dict[str, Any]:
    paths = [work / f"call-{number:03d}.wav" for number in range(files)]
    for path in paths:
        shutil.copyfile(ROOT / "example.wav", path)
    with Emulator(EmulatorOptions(api_key=API_KEY, drop_fraction=1.0, seed=1)) as emulator:
        env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                                WEBHOOK_URL="http://127.0.0.1:9/webhook", WEBHOOK_SECRET=targets.SECRET,
                                DATABASE_URL=f"sqlite:///{work / 'jobs.db'}")
        result = watch(emulator, "POST", [str(ROOT / "client.py"), *map(str, paths)], env, work)
        stats = emulator.stats()
    return {**result, "peak": stats["max_posts_per_second"], "rate_limited": stats["rate_limited_post_jobs"]}


def api_requests(emulator: Emulator, method: str = "") -> int:
    """Requests that reached the API (/v2), of one method or all, whatever their answer."""
    return sum(n for route, n in emulator.stats()["requests"].items() if " /v2" in route and route.startswith(method))


def watch(emulator: Emulator, method: str, command: list[str], env: dict[str, str], work: Path,
          timeout: float = 900) -> dict[str, Any]:
    """Run one script to its end, polling the emulator: its seconds and exit status, how many of its requests
    of `method` reached the API, and how many a second over the window in which that count moved."""
    before = api_requests(emulator, method)
    first = last = (0.0, before)  # (when, count) at the first and the latest change
    with (work / "script.log").open("wb") as output:
        started = time.monotonic()
        process = subprocess.Popen([RUNTIME_PYTHON, *command], cwd=ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        while process.poll() is None:
            now, count = time.monotonic(), api_requests(emulator, method)
            if now > started + timeout:
                targets.stop(process)
                raise RuntimeError(f"{' '.join(command)} ran for over {timeout:g} s")
            if count != last[1]:
                first, last = (first if first[0] else (now, count)), (now, count)
            time.sleep(0.02)
        seconds = time.monotonic() - started
    return {"seconds": seconds, "exit": process.returncode, "requests": api_requests(emulator, method) - before,
            "per_second": (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0}


def finished_jobs(emulator: Emulator, count: int) -> dict[str, str]:
    """`count` jobs submitted over HTTP (limits off), all finished, their notifications dropped:
    {job id: tracking reference}."""
    references, audio = [uuid.uuid4().hex for _ in range(count)], (ROOT / "example.wav").read_bytes()

    def create(session: requests.Session, reference: str) -> str:
        config = {"type": "transcription", "transcription_config": {"language": "en"},
                  "tracking": {"reference": reference},
                  "notification_config": [{"url": "http://127.0.0.1:9/webhook", "contents": ["transcript"]}]}
        response = session.post(f"{emulator.url}/jobs", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
                                data={"config": json.dumps(config)}, files={"data_file": ("call.wav", audio)})
        response.raise_for_status()
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool, requests.Session() as session:
        ids = list(pool.map(partial(create, session), references))
    deadline = time.monotonic() + 120
    while any(emulator.job(job_id)["status"] == "running" for job_id in ids):
        if time.monotonic() > deadline:
            raise RuntimeError("emulator jobs did not finish")
        time.sleep(0.1)
    return dict(zip(ids, references, strict=True))


def history(sizes: list[int], rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    files = Path(tempfile.mkdtemp(prefix="history-files-", dir=scratch))
    link_transcripts(files, max(sizes))
    results: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "pass_interval": PASS_INTERVAL, "backends": {}}
    try:
        with Emulator(EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, seed=1)) as emulator:
            for backend, problem in {"sqlite": None, "postgresql": targets.postgres_problem()}.items():
                rows = results["backends"][backend] = {"skipped": problem} if problem else {}
                for size in [] if problem else sizes:
                    rows[str(size)] = measure_history(backend, size, rounds, files, emulator.url, scratch)
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


def seed(url: str, count: int, files: Path) -> int:
    """`count` done jobs, newest first one every SPACING seconds back from now, in one bulk load; then the
    statistics and the checkpoint a week of traffic would have left. The database's bytes on disk, indexes
    included (rows loaded in bulk fill their pages more than rows written one at a time)."""
    now = open_store(url).now()
    columns = "reference, job_id, audio, status, transcript, created_at, updated_at, checked_at"
    rows = ((f"{n:032x}", f"hist{n:08d}", "call.wav", "done", str(files / f"hist{n:08d}.json"),
             now - 60 - n * SPACING, now - 30 - n * SPACING, now - (30 + n * SPACING) % RECHECK)
            for n in range(count))
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            with conn:  # one transaction
                conn.executemany(f"INSERT INTO jobs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)  # noqa: S608
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(url.removeprefix("sqlite:///"))
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE jobs")  # pages marked all-visible, as autovacuum would have left them
        conn.execute("CHECKPOINT")
        return int(conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()[0])  # indexes, TOAST too


def age_last_pass(url: str, seconds: float) -> None:
    """Time passing, by the database's clock: the seeded checks that would have fallen due `seconds` after
    the first pass are made to look that much older (one index range, not the history)."""
    with open_store(url).database.transaction() as tx:
        tx.execute("UPDATE jobs SET checked_at = checked_at - $1 WHERE status = 'done' AND checked_at < $2",
                   seconds, tx.now() - RECHECK + seconds)


def timed(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time, CPU time and the kernel's peak RSS of one process, started through PEAK."""
    started = time.monotonic()
    done = subprocess.run([RUNTIME_PYTHON, "-c", PEAK, RUNTIME_PYTHON, *command], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    peak_kb, cpu_seconds = done.stdout.split()[-2:]
    return {"seconds": time.monotonic() - started, "cpu_seconds": float(cpu_seconds), "peak_mb": int(peak_kb) / 1024}


def measure_history(backend: str, size: int, rounds: int, files: Path, api_url: str, scratch: Path) -> dict[str, float]:
    """The idle pass's medians (wall and CPU time) and largest peak RSS over `rounds` passes; then the median
    of `rounds` runs of `client.py --list`, and of one notification's latency (notify)."""
    work = Path(tempfile.mkdtemp(prefix="history-run-", dir=scratch))
    try:
        with (targets.fresh_schema("history") if backend == "postgresql"
              else contextlib.nullcontext(f"sqlite:///{work / 'jobs.db'}")) as url:
            stored = seed(url, size, files)
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
            "notification_ms": notification_ms, "bytes_per_job": stored / size}


def notify(url: str, work: Path, count: int = 300) -> float:
    """The median latency of 20 KB notifications sent one at a time to `python server.py`, each for a job the
    database holds as `running`, after a short warm-up."""
    ids = targets.new_ids(count)
    targets.create_running(url, ids)
    with targets.running(targets.ours(work, url)) as server:
        sent = loadgen.measure(server.port, targets.SECRET, ids, 20_000, concurrency=1, warmup=0.3, seconds=120)
    return float(sent["p50_ms"])
