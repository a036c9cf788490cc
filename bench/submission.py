"""Submission and end to end: client.py submitting short files, and each transcript's way back.

`python client.py call-000.wav … call-199.wav`, as a user runs it, against a fresh emulator with the
documented limit of 10 job creations per second switched on and our server receiving the notifications.
Jobs per second are counted over the window in which the emulator saw submissions. End to end is, per
job, from the emulator finishing it (the start of its first notification attempt, which follows at once)
to the transcript stored through the webhook (the job row's updated_at, written in the transaction that
marks it done, after the file is durable).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import targets, traffic
from bench.bodies import ROOT
from bench.stats import percentile
from emulator import Emulator, EmulatorOptions
from notification_flow.jobs import open_store

API_KEY = "bench-api-key"
AUDIO = ROOT / "example.wav"  # a real 3 s recording


def run(files: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs = []
    for number in range(rounds):
        result = measure(files, scratch)
        runs.append(result)
        log(f"submission round {number + 1}/{rounds}: {result['jobs_per_second']:.2f} jobs/s (peak "
            f"{result['max_posts_per_second']}/s, {result['rate_limited']} rate-limited), exit {result['exit']}; "
            f"end to end p50 {result['e2e_p50_ms']:.0f} ms p99 {result['e2e_p99_ms']:.0f} ms "
            f"({result['stored']}/{files} stored)")
    return {"files": files, "runs": runs}


def measure(files: int, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="submission-", dir=scratch))
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=2.0, notify_retry_delays=(1.0, 2.0, 4.0), seed=1)
    try:
        paths = audio_files(work / "audio", files)
        url = f"sqlite:///{work / 'jobs.db'}"
        with Emulator(options) as emulator:
            server = targets.ours(work, url, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url)
            with targets.running(server):
                result = submit(emulator, server, url, paths, work)
                result.update(end_to_end(emulator, url, files))
            stats = emulator.stats()
        result.update(max_posts_per_second=stats["max_posts_per_second"], rate_limited=stats["rate_limited_post_jobs"])
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def audio_files(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True)
    paths = [directory / f"call-{number:03d}.wav" for number in range(count)]
    for path in paths:
        shutil.copyfile(AUDIO, path)
    return paths


def submit(emulator: Emulator, server: targets.Server, database_url: str, paths: list[Path],
           work: Path) -> dict[str, Any]:
    env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                            WEBHOOK_URL=f"{server.url}/webhook", WEBHOOK_SECRET=targets.SECRET,
                            DATABASE_URL=database_url)
    watcher = traffic.Watcher(emulator, "POST")
    watcher.start()
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, str(ROOT / "client.py"), *map(str, paths)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    posts = watcher.stop()
    return {"exit": finished.returncode, "seconds": seconds, "submitted": posts["requests"],
            "busy_seconds": posts["busy_seconds"], "jobs_per_second": posts["per_second"],
            "jobs_per_second_wall": len(paths) / seconds, "errors": finished.stderr.strip()[-300:]}


def end_to_end(emulator: Emulator, database_url: str, files: int, timeout: float = 60) -> dict[str, Any]:
    """Wait for every job to be stored, then time each one from finish to store."""
    store = open_store(database_url)
    deadline = time.monotonic() + timeout
    while len(store.jobs(status="done")) < files and time.monotonic() < deadline:
        time.sleep(0.2)
    finished_at = first_attempts(emulator.deliveries())
    delays = [(job.updated_at - finished_at[job.job_id]) * 1000 for job in store.jobs(status="done")
              if job.job_id in finished_at]
    return {"stored": len(delays), "e2e_ms": delays, "e2e_p50_ms": percentile(delays, 0.5),
            "e2e_p99_ms": percentile(delays, 0.99)}


def first_attempts(deliveries: list[dict[str, Any]]) -> dict[str, float]:
    """When each job's first notification attempt started (epoch seconds; the emulator logs milliseconds)."""
    starts: dict[str, float] = {}
    for delivery in deliveries:
        moment = datetime.fromisoformat(delivery["started_at"].replace("Z", "+00:00")).timestamp()
        starts[delivery["job_id"]] = min(moment, starts.get(delivery["job_id"], moment))
    return starts
