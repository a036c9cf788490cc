"""The soak (bench/soak.py, `make soak`) in small: the same code path with ~40 jobs on each backend.

Every fault is on at once - dropped, duplicated (some concurrently), delayed and reordered notifications,
429/503 answers, a rejected share of jobs, a server SIGKILLed and restarted at a seeded moment, a client
killed between submitting and recording, two overlapping cronjob passes - and every counter must be zero.
PostgreSQL runs two servers, each notified by half of the jobs. SOAK_SEED replays another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.soak import SoakOptions, run_soak

SEED = int(os.environ.get("SOAK_SEED", "20240611"))
JOBS = 40


def test_short_soak_loses_nothing(database_url: str, tmp_path: Path) -> None:
    servers = 2 if database_url.startswith("postgres") else 1
    result = run_soak(SoakOptions(jobs=JOBS, seed=SEED, servers=servers), database_url, tmp_path / "soak",
                      say=print)
    print(result.report())
    assert result.failures() == {}, result.report()
    assert result.observed["jobs at the API"] == JOBS
    # The faults really happened, or the zeros above prove nothing.
    assert result.observed["server SIGKILLs (each restarted)"] >= 1
    assert result.observed["notifications dropped"] > 0 and result.observed["notifications duplicated"] > 0
    assert result.observed["  rejected"] > 0
    assert result.timings["cronjob passes overlapping"] > 0
