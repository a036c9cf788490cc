"""cronjob.py and client.py at the API's rate limits, each run as a user runs it against a fresh emulator.

- **reconcile**: `count` jobs finished at the emulator with every notification dropped, and `running` in a
  fresh database; then 50 ms of latency on every API answer and the documented limits on (50 reads, 10
  submissions a second), and `python cronjob.py --all` recovers them.
- **submission**: `python client.py call-000.wav …` with the limit of 10 job creations a second on; the
  emulator drops every notification: this measures submitting, not receiving.

Requests per second are counted over the window in which the emulator's count of them moved, polled while
the script runs, so the interpreter's start-up is not counted as time the API was idle; the peak is the
emulator's own largest count in any 1 s window.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench import ROOT, targets
from emulator import Emulator, EmulatorOptions

API_KEY = "bench-api-key"
LATENCY_MS = 50


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
    return {**result, "per_second_wall": files / result["seconds"], "peak": stats["max_posts_per_second"],
            "rate_limited": stats["rate_limited_post_jobs"]}


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
        process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=output,
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
    with ThreadPoolExecutor(8) as pool, requests.Session() as session:
        ids = list(pool.map(lambda reference: submit_one(session, emulator.url, audio, reference), references))
    deadline = time.monotonic() + 120
    while any(emulator.job(job_id)["status"] == "running" for job_id in ids):
        if time.monotonic() > deadline:
            raise RuntimeError("emulator jobs did not finish")
        time.sleep(0.1)
    return dict(zip(ids, references, strict=True))


def submit_one(session: requests.Session, url: str, audio: bytes, reference: str) -> str:
    config = {"type": "transcription", "transcription_config": {"language": "en"},
              "tracking": {"reference": reference},
              "notification_config": [{"url": "http://127.0.0.1:9/webhook", "contents": ["transcript"]}]}
    response = session.post(f"{url}/jobs", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
                            data={"config": json.dumps(config)}, files={"data_file": ("call.wav", audio)})
    response.raise_for_status()
    return str(response.json()["id"])

