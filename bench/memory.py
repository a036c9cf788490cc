"""Memory: how far a server worker's resident memory rises while it receives one 200 MB transcript.

The body is streamed from a file by the load generator's process, with a Content-Length as Speechmatics
sends it. The figure is the kernel's own peak (VmHWM) of each of the server's processes after the body,
less that process's resident memory (VmRSS) idle just before; the largest is the worker that handled it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import jobrows, targets
from bench.bodies import ROOT, write_body

MB = 1024 * 1024


def run(size: int, rounds: int, scratch: Path, log: Callable[[str], None], label: str = "memory",
        **extra: str) -> dict[str, Any]:
    """`rounds` bodies of `size` bytes, one at a time; `extra`: more settings for the server (bench/s3.py)."""
    runs = []
    for number, job_id in enumerate(jobrows.new_ids(rounds)):
        work = Path(tempfile.mkdtemp(prefix="memory-", dir=scratch))
        try:
            runs.append(measure(job_id, size, work, **extra))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{label} round {number + 1}/{rounds}: +{runs[-1]['peak_above_idle_kb'] / 1024:.1f} MB, "
            f"status {runs[-1]['status']}")
    return {"size": size, "runs": runs}


def measure(job_id: str, size: int, work: Path, **extra: str) -> dict[str, Any]:
    body, ids, out = work / "body.json", work / "ids.txt", work / "loadgen.json"
    written = write_body(body, job_id, size)
    ids.write_text(job_id)
    url = f"sqlite:///{work / 'jobs.db'}"
    store = jobrows.create_running(url, [job_id])
    server = targets.ours(work, url, max_notification_mb=written // MB + 64, **extra)
    with targets.running(server):
        idle = {pid: status_kb(pid, "VmRSS") for pid in server.pids()}
        command = [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--secret", targets.SECRET,
                   "--ids", str(ids), "--body-file", str(body), "--concurrency", "1", "--out", str(out)]
        subprocess.run(command, cwd=ROOT, check=True, timeout=600)
        peak = max(status_kb(pid, "VmHWM") - rss for pid, rss in idle.items())
    answer = json.loads(out.read_text())
    return {"body_bytes": written, "peak_above_idle_kb": peak, "idle_kb": sum(idle.values()),
            "status": next(iter(answer["all_statuses"]), "none"), "stored": jobrows.count_done(store)}


def status_kb(pid: int, name: str) -> int:
    """One of the kernel's memory figures for a process, in KB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
