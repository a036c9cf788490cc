"""What the emulator saw of a run: request counts, the busy window, and the documented-limit peaks.

The emulator's stats() count from its start, so each run gets its own emulator and this watcher takes a
snapshot before the run and polls during it: the reads (or submissions) per second are then counted over
the window in which the API was actually busy, not over the script's interpreter start-up.
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
    """Polls emulator.stats() and remembers when the count of `method` requests first and last moved."""

    def __init__(self, emulator: Any, method: str) -> None:
        super().__init__(daemon=True)
        self.emulator, self.method = emulator, method
        self.before = count(emulator.stats(), method)
        self.first_change: float | None = None
        self.last_change: float | None = None
        self.first_count = self.last_count = self.before
        self.done = threading.Event()

    def run(self) -> None:
        seen = self.before
        while not self.done.is_set():
            now, current = time.monotonic(), count(self.emulator.stats(), self.method)
            if current != seen:
                if self.first_change is None:
                    self.first_change, self.first_count = now, current
                self.last_change, self.last_count, seen = now, current, current
            self.done.wait(POLL_SECONDS)

    def stop(self) -> dict[str, float]:
        """Requests during the run; the busy window and the rate within it (requests seen after the first
        poll that saw any, over the time from that poll to the last that saw a change)."""
        self.done.set()
        self.join()
        requests = count(self.emulator.stats(), self.method) - self.before
        busy = (self.last_change - self.first_change) if self.first_change and self.last_change else 0.0
        rate = (self.last_count - self.first_count) / busy if busy > 0 else 0.0
        return {"requests": requests, "busy_seconds": busy, "per_second": rate}
