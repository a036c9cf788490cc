"""Unit tests of notification_flow.retry: backoff delays, the per-call Budget, sliced sleep and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from notification_flow import retry
from notification_flow.retry import Budget, GaveUp, RetryPolicy, retry_after_seconds
from tests.unit.support import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(now=1000.0)
    monkeypatch.setattr(retry, "time", fake)
    return fake


def upper_bound(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make random.uniform return its upper bound, recording every (low, high) it was asked for."""
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return high

    monkeypatch.setattr(retry.random, "uniform", uniform)
    return calls


# -- RetryPolicy.delay --------------------------------------------------------------------------------------

@pytest.mark.parametrize("attempt, bound", [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (20, 30.0)])
def test_delay_is_full_jitter_up_to_a_doubling_bound_under_the_cap(monkeypatch: pytest.MonkeyPatch,
                                                                  attempt: int, bound: float) -> None:
    calls = upper_bound(monkeypatch)
    assert RetryPolicy(base=0.5, cap=30.0).delay(attempt) == bound
    assert calls == [(0, bound)]


@pytest.mark.parametrize("attempt", [1, 3, 8])
def test_delay_stays_within_its_bounds_with_real_randomness(attempt: int) -> None:
    policy = RetryPolicy(base=0.25, cap=1.0)
    bound = min(1.0, 0.25 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(300)]
    assert all(0 <= delay <= bound for delay in delays)
    assert max(delays) > bound / 2  # full jitter spreads over the range, not a constant


@pytest.mark.parametrize("retry_after, jitter, expected", [
    (5.0, 0.1, 5.0),  # the server's wish is a floor
    (0.5, 3.0, 3.0),  # a longer backoff is kept
    (500.0, 0.1, 120.0),  # capped at longest_retry_after
    (0.0, 0.2, 0.2),
])
def test_retry_after_is_a_floor_capped_by_longest_retry_after(monkeypatch: pytest.MonkeyPatch, retry_after: float,
                                                              jitter: float, expected: float) -> None:
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: jitter)
    assert RetryPolicy(longest_retry_after=120.0).delay(1, retry_after) == expected


# -- Budget.spend ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attempts", [1, 3, 6])
def test_budget_gives_up_on_the_attempts_th_failure(clock: FakeClock, attempts: int) -> None:
    budget = RetryPolicy(attempts=attempts, base=0.001, cap=0.001).budget()
    for _ in range(attempts - 1):
        budget.spend("HTTP 503")
    with pytest.raises(GaveUp, match=f"gave up after {attempts} attempt.*HTTP 503"):
        budget.spend("HTTP 503")
    assert budget.tried == attempts
    assert len(clock.sleeps) >= attempts - 1  # slept between tries, never after the last one


def test_budget_sleeps_the_delay_between_tries(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    upper_bound(monkeypatch)
    budget = Budget(RetryPolicy(attempts=4, base=1.0, cap=10.0))
    budget.spend("a")
    budget.spend("b")
    budget.spend("c")
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_budget_raises_at_once_when_the_wait_exceeds_max_wait(clock: FakeClock) -> None:
    budget = Budget(RetryPolicy(attempts=6, max_wait=10.0, longest_retry_after=300.0))
    with pytest.raises(GaveUp, match="gave up after 1 attempt: throttled"):
        budget.spend("throttled", retry_after=60.0)
    assert clock.sleeps == []


def test_budget_with_zero_max_wait_never_sleeps(clock: FakeClock) -> None:
    budget = Budget(RetryPolicy(attempts=5, max_wait=0.0))
    with pytest.raises(GaveUp):
        budget.spend("HTTP 500")
    assert clock.sleeps == []


def test_budget_waits_out_a_retry_after_within_max_wait(clock: FakeClock) -> None:
    budget = Budget(RetryPolicy(attempts=3, base=0.001, cap=0.001, max_wait=120.0))
    budget.spend("HTTP 429", retry_after=25.0)
    assert sum(clock.sleeps) == pytest.approx(25.0)


def test_budget_calls_the_heartbeat_during_a_long_sleep(clock: FakeClock) -> None:
    beats: list[float] = []
    budget = RetryPolicy(attempts=3, base=0.001, cap=0.001).budget(lambda: beats.append(clock.now))
    budget.spend("HTTP 429", retry_after=35.0)
    assert sum(clock.sleeps) == pytest.approx(35.0)
    assert max(clock.sleeps) <= 10.0
    assert beats == [1010.0, 1020.0, 1030.0]


def test_budget_does_not_call_the_heartbeat_during_a_short_sleep(clock: FakeClock) -> None:
    beats: list[float] = []
    budget = RetryPolicy(attempts=3, base=0.001, cap=0.001).budget(lambda: beats.append(clock.now))
    budget.spend("HTTP 503")
    assert beats == []


def test_a_raising_heartbeat_stops_the_sleep(clock: FakeClock) -> None:
    def closed() -> None:
        raise RuntimeError("row closed")

    budget = RetryPolicy(attempts=3, base=0.001, cap=0.001).budget(closed)
    with pytest.raises(RuntimeError, match="row closed"):
        budget.spend("HTTP 429", retry_after=60.0)
    assert sum(clock.sleeps) == pytest.approx(10.0)


@pytest.mark.parametrize("seconds, every, slices", [(25.0, 10.0, [10.0, 10.0, 5.0]), (3.0, 10.0, [3.0]),
                                                    (0.0, 10.0, []), (-1.0, 10.0, []), (9.0, 4.0, [4.0, 4.0, 1.0])])
def test_sleep_is_sliced(clock: FakeClock, seconds: float, every: float, slices: list[float]) -> None:
    retry.sleep(seconds, every=every)
    assert clock.sleeps == pytest.approx(slices)


# -- retry_after_seconds --------------------------------------------------------------------------------------

NOW = datetime(2025, 6, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0),
    ("0", 0.0),
    ("1.5", 1.5),
    (" 7 ", 7.0),
    ("-5", 0.0),  # never a negative wait
    (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
    (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),  # a date in the past: no wait
    ("Mon, 30 Jun 2025 12:00:30 GMT", 30.0),
    ("", None),
    (None, None),
    ("soon", None),
    ("Mon, 99 Foo 2025", None),
])
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW.timestamp) == (None if expected is None else pytest.approx(expected))
