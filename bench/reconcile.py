"""Reconcile: cronjob.py recovering jobs whose notifications were all lost, at the API's read limit.

Each round gets a fresh emulator holding `count` finished jobs whose notifications were all dropped, and a
fresh database holding the same jobs as `running`. Then 50 ms of latency is added to every API answer and
the documented limits are switched on (50 reads, 10 submissions per second), and `python cronjob.py --all`
runs as its own process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench import jobrows, traffic
from bench.bodies import ROOT
from bench.targets import clean_env
from emulator import Emulator, EmulatorOptions

API_KEY = "bench-api-key"
LATENCY_MS = 50


def run(count: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs = []
    for number in range(rounds):
        runs.append(result := measure(count, scratch))
        log(f"reconcile round {number + 1}/{rounds}: {result['seconds']:.1f} s, {result['reads_per_second']:.1f} "
            f"reads/s (peak {result['peak_reads']}), {result['recovered']} recovered")
    return {"jobs": count, "latency_ms": LATENCY_MS, "runs": runs}


def measure(count: int, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="reconcile-", dir=scratch))
    options = EmulatorOptions(api_key=API_KEY, processing_seconds=0.05, drop_fraction=1.0, seed=1,
                              rate_limit_post_per_second=0, rate_limit_get_per_second=0)
    try:
        with Emulator(options) as emulator:
            jobs = finished_jobs(emulator, count)
            url = f"sqlite:///{work / 'jobs.db'}"
            store = jobrows.create_running(url, list(jobs), references=list(jobs.values()))
            emulator.set_faults(api_latency_ms=LATENCY_MS, rate_limit_get_per_second=50,
                                rate_limit_post_per_second=10)
            env = clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                            DATABASE_URL=url, TRANSCRIPTS_DIR=str(work / "transcripts"))
            calls_before = traffic.api_calls(emulator.stats())
            with traffic.Watcher(emulator, "GET") as reads:
                started = time.perf_counter()
                finished = subprocess.run([sys.executable, str(ROOT / "cronjob.py"), "--all"], cwd=ROOT, env=env,
                                          capture_output=True, text=True, timeout=900, check=False)
                seconds = time.perf_counter() - started
            stats = emulator.stats()
        stored = work / "transcripts"
        recovered = sum(1 for job in store.jobs(status="done") if (stored / f"{job.job_id}.json").is_file())
        calls = traffic.api_calls(stats) - calls_before
        return {"seconds": seconds, "exit": finished.returncode, "reads_per_second": reads.per_second,
                "peak_reads": stats["max_gets_per_second"], "rate_limited": stats["rate_limited_get"],
                "recovered": recovered, "calls_per_job": calls / recovered if recovered else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def finished_jobs(emulator: Emulator, count: int) -> dict[str, str]:
    """`count` jobs submitted over HTTP (limits off), all finished, their notifications dropped:
    {job id: tracking reference}."""
    references = [uuid.uuid4().hex for _ in range(count)]
    audio = (ROOT / "example.wav").read_bytes()
    with ThreadPoolExecutor(8) as pool, requests.Session() as session:
        ids = list(pool.map(lambda reference: submit(session, emulator.url, audio, reference), references))
    deadline = time.monotonic() + 120
    while any(emulator.job(job_id)["status"] == "running" for job_id in ids):
        if time.monotonic() > deadline:
            raise RuntimeError("emulator jobs did not finish")
        time.sleep(0.1)
    return dict(zip(ids, references, strict=True))


def submit(session: requests.Session, url: str, audio: bytes, reference: str) -> str:
    config = {"type": "transcription", "transcription_config": {"language": "en"},
              "tracking": {"reference": reference},
              "notification_config": [{"url": "http://127.0.0.1:9/webhook", "contents": ["transcript"]}]}
    response = session.post(f"{url}/jobs", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
                            data={"config": json.dumps(config)}, files={"data_file": ("call.wav", audio)})
    response.raise_for_status()
    return str(response.json()["id"])
