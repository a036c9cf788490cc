"""Submission: client.py submitting short files, paced under the API's limit of 10 job creations a second.

`python client.py call-000.wav … call-199.wav`, as a user runs it, against a fresh emulator with the
documented limit switched on. Jobs per second are counted over the window in which the emulator saw
submissions; the peak is the emulator's largest count in any 1 s window. The emulator drops every
notification: this measures submitting, not receiving.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import targets, traffic
from bench.bodies import ROOT
from emulator import Emulator, EmulatorOptions

API_KEY = "bench-api-key"


def run(files: int, rounds: int, scratch: Path, log: Callable[[str], None]) -> dict[str, Any]:
    runs = []
    for number in range(rounds):
        runs.append(result := measure(files, scratch))
        log(f"submission round {number + 1}/{rounds}: {result['jobs_per_second']:.2f} jobs/s (peak "
            f"{result['peak']}/s, {result['rate_limited']} rate-limited), exit {result['exit']}")
    return {"files": files, "runs": runs}


def measure(files: int, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="submission-", dir=scratch))
    try:
        (work / "audio").mkdir()
        paths = [work / "audio" / f"call-{number:03d}.wav" for number in range(files)]
        for path in paths:
            shutil.copyfile(ROOT / "example.wav", path)
        with Emulator(EmulatorOptions(api_key=API_KEY, drop_fraction=1.0, seed=1)) as emulator:
            env = targets.clean_env(work, SPEECHMATICS_API_KEY=API_KEY, SPEECHMATICS_BATCH_URL=emulator.url,
                                    WEBHOOK_URL="http://127.0.0.1:9/webhook", WEBHOOK_SECRET=targets.SECRET,
                                    DATABASE_URL=f"sqlite:///{work / 'jobs.db'}")
            with traffic.Watcher(emulator, "POST") as posts:
                started = time.perf_counter()
                finished = subprocess.run([sys.executable, str(ROOT / "client.py"), *map(str, paths)], cwd=ROOT,
                                          env=env, capture_output=True, text=True, timeout=600, check=False)
                seconds = time.perf_counter() - started
            stats = emulator.stats()
        return {"exit": finished.returncode, "submitted": posts.requests, "jobs_per_second": posts.per_second,
                "jobs_per_second_wall": files / seconds, "peak": stats["max_posts_per_second"],
                "rate_limited": stats["rate_limited_post_jobs"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
