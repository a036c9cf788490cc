"""Memory: the server's resident memory while it receives one 200 MB json-v2 transcript, against idle.

The body is streamed from a file by the load generator's process, with a Content-Length as Speechmatics
sends it. While it travels, every process of the server's group (gunicorn master and workers) is sampled
every 10 ms: the peak of their summed RSS, against the same sum measured idle just before, is the figure.
The kernel's own per-process peak (VmHWM) of the worker that handled it is reported beside it, since a
10 ms sampler can miss a short spike.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import jobrows, targets
from bench.bodies import ROOT, write_body

MB = 1024 * 1024
SAMPLE_SECONDS = 0.01


def run(size: int, rounds: int, scratch: Path, log: Callable[[str], None], label: str = "memory",
        **extra: str) -> dict[str, Any]:
    """`rounds` bodies of `size` bytes, one at a time; `extra`: more settings for the server (bench/s3.py)."""
    body_dir = Path(tempfile.mkdtemp(prefix="memory-body-", dir=scratch))
    try:
        job_ids = jobrows.new_ids(rounds)
        runs = []
        for number, job_id in enumerate(job_ids):
            body = body_dir / "body.json"
            written = write_body(body, job_id, size)
            result = measure(job_id, body, scratch, **extra)
            result["body_bytes"] = written
            runs.append(result)
            log(f"{label} round {number + 1}/{rounds}: idle {result['idle_rss_kb'] / 1024:.1f} MB, peak "
                f"{result['peak_rss_kb'] / 1024:.1f} MB (+{result['delta_kb'] / 1024:.1f} MB), "
                f"worker peak +{result['worker_hwm_delta_kb'] / 1024:.1f} MB, status {result['status']}, "
                f"{result['seconds']:.1f} s")
        return {"size": size, "runs": runs}
    finally:
        shutil.rmtree(body_dir, ignore_errors=True)


def measure(job_id: str, body: Path, scratch: Path, **extra: str) -> dict[str, Any]:
    """One round; `extra`: more settings for the server (bench/s3.py: TRANSCRIPTS_URL and AWS_*)."""
    work = Path(tempfile.mkdtemp(prefix="memory-", dir=scratch))
    try:
        url = f"sqlite:///{work / 'jobs.db'}"
        store = jobrows.create_running(url, [job_id])
        limit_mb = body.stat().st_size // MB + 64
        with targets.running(targets.ours(work, url, max_notification_mb=limit_mb, **extra)) as server:
            idle = rss_by_pid(server.pids())
            result = send_while_sampling(server, job_id, body, work)
            result["idle_rss_kb"] = sum(idle.values())
            result["delta_kb"] = result["peak_rss_kb"] - result["idle_rss_kb"]
            worker, peak = max(result["hwm_kb"].items(), key=lambda item: item[1] - idle.get(item[0], 0))
            result["worker_hwm_delta_kb"] = peak - idle.get(worker, peak)
        result["stored"] = jobrows.count_done(store)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def send_while_sampling(server: targets.Server, job_id: str, body: Path, work: Path) -> dict[str, Any]:
    ids, out = work / "ids.txt", work / "loadgen.json"
    ids.write_text(job_id)
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--secret", targets.SECRET,
               "--ids", str(ids), "--body-file", str(body), "--concurrency", "1", "--out", str(out)]
    sampler = Sampler(server)
    sampler.start()
    started = time.perf_counter()
    try:
        subprocess.run(command, cwd=ROOT, check=True, timeout=600)
    finally:
        sampler.stop()
    answer = json.loads(out.read_text())
    return {"peak_rss_kb": sampler.peak_sum, "hwm_kb": hwm_by_pid(server.pids()), "seconds": time.perf_counter()
            - started, "status": next(iter(answer["all_statuses"]), "none"), "samples": sampler.samples}


class Sampler(threading.Thread):
    """Sums the RSS of the server's processes every 10 ms and keeps the largest sum seen."""

    def __init__(self, server: targets.Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.peak_sum = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        pids = self.server.pids()
        while not self.done.is_set():
            self.peak_sum = max(self.peak_sum, sum(rss_by_pid(pids).values()))
            self.samples += 1
            self.done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self.done.set()
        self.join()


def _status_field(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_by_pid(pids: list[int]) -> dict[int, int]:
    return {pid: _status_field(pid, "VmRSS") for pid in pids}


def hwm_by_pid(pids: list[int]) -> dict[int, int]:
    return {pid: _status_field(pid, "VmHWM") for pid in pids}
