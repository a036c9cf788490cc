"""Setting up rows, a clock that never sleeps, and what a process holds open, for the in-process tests."""

from __future__ import annotations

import os
from pathlib import Path

from notification_flow.jobs import JobStore
from notification_flow.lifecycle import State


def put_row(store: JobStore, reference: str, state: State, job_id: str | None = None) -> None:
    """A row in any state, as the lifecycle could have left it (for tests that start from that state)."""
    with store.database.transaction() as tx:
        now = tx.now()
        tx.execute("INSERT INTO jobs (reference, job_id, audio, status, created_at, updated_at) "
                   "VALUES ($1, $2, 'a.wav', $3, $4, $4)", reference, job_id, state, now)


class FakeClock:
    """Stands in for the `time` module inside notification_flow.retry: sleeping advances the clock at once,
    so backoff and Retry-After are recorded, never slept."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


def held_open(directory: Path) -> list[str]:
    """The files this process holds open in `directory`: an unnamed one (O_TMPFILE) shows as `#<inode> (deleted)`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed since
            continue
        if target.startswith(f"{directory}{os.sep}"):
            found.append(target)
    return found
