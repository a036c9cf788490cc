"""How often, and how patiently, a call to Speechmatics is tried: the policy as data, and the budget of one call.

One `RetryPolicy` is stated once and shared; each call (a submission with its look-ups, a read, a download)
spends one `Budget`, so no combination of failures can try a call more than `attempts` times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


class GaveUp(Exception):
    """The budget is spent, or the server asked us to wait longer than the call may."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries of one call, whatever failed
    base: float = 0.5  # the first backoff's upper bound (s); it doubles with every try
    cap: float = 30.0  # no backoff is longer
    max_wait: float = 120.0  # a longer pause ends the call at once: a webhook handler never waits one out
    longest_retry_after: float = 120.0  # a Retry-After beyond this is waited out only this long

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
        delay = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return delay if retry_after is None else max(delay, min(retry_after, self.longest_retry_after))

    def budget(self, heartbeat: Callable[[], None] | None = None) -> Budget:
        return Budget(self, heartbeat)


class Budget:
    """The tries of one call: `spend` after a failed try either sleeps until the next or raises GaveUp."""

    def __init__(self, policy: RetryPolicy, heartbeat: Callable[[], None] | None = None) -> None:
        self.policy = policy
        self.heartbeat = heartbeat
        self.tried = 0

    def spend(self, problem: str, retry_after: float | None = None) -> None:
        self.tried += 1
        delay = self.policy.delay(self.tried, retry_after)
        if self.tried >= self.policy.attempts or delay > self.policy.max_wait:
            raise GaveUp(f"gave up after {self.tried} attempt{'s' * (self.tried > 1)}: {problem}")
        sleep(delay, self.heartbeat)


def sleep(seconds: float, heartbeat: Callable[[], None] | None = None, every: float = 10.0) -> None:
    """Sleep, in slices short enough to keep a heartbeat going."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, every))
        if heartbeat and left > every:
            heartbeat()


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After in seconds, from either of its forms (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now())
        except (TypeError, ValueError):
            return None
