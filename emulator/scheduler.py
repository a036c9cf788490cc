"""One timer thread plus a bounded worker pool for everything the emulator does in the background.

Processing timers, expiry, notification delays and retries are entries in one heap instead of one
sleeping thread each, so thousands of pending jobs cost memory, not threads; the work itself
(fetching media, rendering transcripts, sending notifications) runs on a fixed-size pool.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

LOG = logging.getLogger("emulator")
WORKERS = 32


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="emulator-worker")
        self._thread = threading.Thread(target=self._run, name="emulator-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the pool after ``delay`` seconds (silently dropped once stopped)."""
        with self._wakeup:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._order), function, args))
            self._wakeup.notify()

    def run_now(self, function: Callable[..., Any], *args: Any) -> None:
        self.call_later(0.0, function, *args)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wakeup.wait(timeout)
                if self._stopped:
                    return
                _, _, function, args = heapq.heappop(self._heap)
            self._pool.submit(_logged, function, *args)

    def stop(self) -> None:
        """Forget pending timers, let running work finish (each bounded by its own timeout), join."""
        with self._wakeup:
            self._stopped = True
            self._heap.clear()
            self._wakeup.notify()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _logged(function: Callable[..., Any], *args: Any) -> None:
    """Background failures must show up in the log instead of vanishing inside a Future."""
    try:
        function(*args)
    except Exception:
        LOG.exception("background task %s failed", getattr(function, "__name__", function))
