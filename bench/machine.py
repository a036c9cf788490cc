"""Where and with what the numbers were taken: hardware, operating system, versions, and how busy it was.

The load average is read before and after: `make bench` may share the machine with other work, and a
reader should see that rather than guess it.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.bodies import ROOT

PACKAGES = ("flask", "werkzeug", "gunicorn", "ijson", "psycopg", "requests", "httpx", "speechmatics-python")


def describe(scratch: Path) -> dict[str, Any]:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_model(),
            "cores": os.cpu_count(), "memory_gb": round(memory_kb() / 1024 / 1024, 1),
            "os": os_name(), "kernel": platform.release(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "postgresql": postgres_version(), "filesystem": filesystem(scratch),
            "packages": {name: version(name) for name in PACKAGES}, "ijson_backend": ijson_backend(),
            "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--",
                                                                           "server.py", "client.py", "cronjob.py",
                                                                           "notification_flow")),
            "load_before": load_average()}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return platform.system()


def filesystem(path: Path) -> str:
    """The type of the filesystem the transcripts and databases were written to (fsync cost depends on it)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        if resolved.startswith(mount) and len(mount) > len(best):
            best, kind = mount, f"{fstype} on {device}"
    return kind


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def ijson_backend() -> str:
    import ijson

    return str(ijson.backend)


def postgres_version() -> str | None:
    from bench.jobrows import POSTGRES_URL, postgres_problem

    if postgres_problem():
        return None
    import psycopg

    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else None


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
