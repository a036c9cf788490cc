"""What the emulator saw of a run: API calls, and requests of one method per second while the API was busy.

The rate is counted over the window in which the emulator's count of that method moved, polled while the
script runs, so the script's interpreter start-up is not counted as time the API was idle.
"""

from __future__ import annotations

import threading
import time
from typing import Any

POLL_SECONDS = 0.02


def count(stats: dict[str, Any], method: str) -> int:
    """Requests of one method that reached the API (/v2), whatever their answer."""
    return sum(n for route, n in stats["requests"].items() if route.startswith(f"{method} /v2"))


def api_calls(stats: dict[str, Any]) -> int:
    return sum(n for route, n in stats["requests"].items() if " /v2" in route)


class Watcher(threading.Thread):
    """`with Watcher(emulator, "GET") as seen:` ... then `seen.per_second` and `seen.requests`."""

    def __init__(self, emulator: Any, method: str) -> None:
        super().__init__(daemon=True)
        self.emulator, self.method, self.done = emulator, method, threading.Event()
        self.before = count(emulator.stats(), method)
        self.changes: list[tuple[float, int]] = []  # (when, count) at the first and the latest change
        self.requests, self.per_second = 0, 0.0

    def run(self) -> None:
        seen = self.before
        while not self.done.is_set():
            now, current = time.monotonic(), count(self.emulator.stats(), self.method)
            if current != seen:
                self.changes = [self.changes[0] if self.changes else (now, current), (now, current)]
                seen = current
            self.done.wait(POLL_SECONDS)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.join()
        self.requests = count(self.emulator.stats(), self.method) - self.before
        if len(self.changes) == 2 and self.changes[1][0] > self.changes[0][0]:
            (first_at, first), (last_at, last) = self.changes
            self.per_second = (last - first) / (last_at - first_at)
