"""Memory: how far a server worker's resident memory rises while it receives one 200 MB transcript.

The load generator sends the body in one request with a Content-Length, as Speechmatics sends it. The
figure is the kernel's own peak (VmHWM) of each of the server's processes after the body, less that
process's resident memory (VmRSS) idle just before; the largest is the worker that handled it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import jobrows, loadgen, targets


def run(size: int, rounds: int, scratch: Path, log: Callable[[str], None], name: str = "ours",
        **settings: str) -> dict[str, Any]:
    """`rounds` bodies of `size` bytes, one at a time; `settings`: more for the server (bench/ingest.py's S3)."""
    runs = targets.rounds(f"memory {name}", rounds, {name: lambda work: measure(size, work, settings)}, scratch, log)
    return {"size": size, "runs": runs}


def measure(size: int, work: Path, settings: dict[str, str]) -> dict[str, Any]:
    job_id, url = jobrows.new_ids(1)[0], f"sqlite:///{work / 'jobs.db'}"
    store = jobrows.create_running(url, [job_id])
    server = targets.ours(work, url, max_notification_mb=size // 2**20 + 64, **settings)
    with targets.running(server):
        idle = {pid: status_kb(pid, "VmRSS") for pid in server.pids()}
        sent = loadgen.measure(server.port, targets.SECRET, [job_id], size, concurrency=1, warmup=0, seconds=600)
        peak = max(status_kb(pid, "VmHWM") - rss for pid, rss in idle.items())
    return {"peak_above_idle_mb": peak / 1024, "idle_mb": sum(idle.values()) / 1024,
            "status": ", ".join(sent["statuses"]), "stored": len(store.jobs(status="done"))}


def status_kb(pid: int, name: str) -> int:
    """One of the kernel's memory figures for a process, in KB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
