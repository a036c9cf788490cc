"""Memory: how far a server worker's resident memory rises while it receives one 200 MB transcript.

The body is sent in one request with a Content-Length, as Speechmatics sends it. The figure is the kernel's
own peak (VmHWM) of each of the server's processes after the body, less that process's resident memory
(VmRSS) idle just before; the largest is the worker that handled it.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import jobrows, loadgen, targets
from bench.bodies import template

MB = 1024 * 1024


def run(size: int, rounds: int, scratch: Path, log: Callable[[str], None], name: str = "ours",
        **settings: str) -> dict[str, Any]:
    """`rounds` bodies of `size` bytes, one at a time; `settings`: more for the server (bench/s3.py)."""
    runs = targets.rounds(f"memory {name}", rounds, {name: lambda work: measure(size, work, settings)}, scratch, log)
    return {"size": size, "runs": runs}


def measure(size: int, work: Path, settings: dict[str, str]) -> dict[str, Any]:
    job_id = jobrows.new_ids(1)[0]
    body = template(size).body(job_id)
    url = f"sqlite:///{work / 'jobs.db'}"
    store = jobrows.create_running(url, [job_id])
    server = targets.ours(work, url, max_notification_mb=len(body) // MB + 64, **settings)
    with targets.running(server):
        idle = {pid: status_kb(pid, "VmRSS") for pid in server.pids()}
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600, blocksize=MB)
        connection.request("POST", f"/webhook?id={job_id}&status=success", body,
                           loadgen.headers(targets.SECRET, job_id))
        answer = connection.getresponse()
        answer.read()
        connection.close()
        peak = max(status_kb(pid, "VmHWM") - rss for pid, rss in idle.items())
    return {"body_bytes": len(body), "peak_above_idle_mb": peak / 1024, "idle_mb": sum(idle.values()) / 1024,
            "status": str(answer.status), "stored": jobrows.count_done(store)}


def status_kb(pid: int, name: str) -> int:
    """One of the kernel's memory figures for a process, in KB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
