"""Where and with what the numbers were taken: hardware, versions, and how busy the machine was.

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

PACKAGES = ("flask", "gunicorn", "ijson", "psycopg", "httpx", "boto3")
SCRIPTS = ("server.py", "client.py", "cronjob.py", "notification_flow")


def describe() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    commit = git("rev-parse", "--short", "HEAD")
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "commit": commit, "dirty": bool(git("status", "--porcelain", *SCRIPTS)),
            "packages": {name: metadata.version(name) for name in PACKAGES}, "load_before": load_average()}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
