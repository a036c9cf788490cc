"""GET /v2/usage and the timestamp parsing of GET /v2/jobs?created_before=.

Usage counts every job that finished ``done`` (deleting it later does not change usage, as the
docs say), grouped by day of creation. Unlike the service, today's jobs are included, so a test
can see its own jobs counted at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from emulator.errors import ApiError
from emulator.jobs import Job

MODELS = {"standard", "enhanced", "melia-1"}
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_timestamp_ms(text: str) -> int:
    """RFC 3339 with up to nanoseconds, truncated to milliseconds as the API describes; 422 if invalid."""
    cleaned = _FRACTION.sub(r"\1", text.strip().replace("z", "Z").replace("t", "T"), count=1)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ApiError(422, "Unprocessable Entity", f"created_before is not an RFC 3339 date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _day(text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "Unprocessable Entity", f"expected a date as YYYY-MM-DD, got {text!r}") from None


@dataclass(frozen=True)
class Billed:
    """What usage needs of a job that finished done, copied out of the job table under its lock."""

    day: date
    language: str
    model: str | None
    duration: int

    @classmethod
    def of(cls, job: Job) -> Billed | None:
        if not job.billable:
            return None
        transcription = job.config.get("transcription_config") or {}
        model = transcription.get("model") or transcription.get("operating_point")
        day = datetime.fromtimestamp(job.created_ts, UTC).date()
        return cls(day, str(transcription.get("language", "")), model if model in MODELS else None, job.duration)


def report(jobs: list[Billed | None], since_text: str | None, until_text: str | None) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    since = _day(since_text, today.replace(day=1))
    until = _day(until_text, today)
    counted = [job for job in jobs if job is not None and since <= job.day <= until]
    summary = _group(counted, lambda job: ())
    details = _group(counted, _detail_key)
    return {
        "since": f"{since.isoformat()}T00:00:00Z",
        "until": f"{until.isoformat()}T23:59:59Z",
        "summary": summary,
        "details": details,
    }


def _detail_key(job: Billed) -> tuple[tuple[str, str], ...]:
    key = [("language", job.language)]
    if job.model:
        key.append(("operating_point", job.model))
    return tuple(key)


def _group(jobs: list[Billed], key: Any) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Billed]] = defaultdict(list)
    for job in jobs:
        groups[key(job)].append(job)
    return [
        {"mode": "batch", "type": "transcription", **dict(group), "count": len(members),
         "duration_hrs": round(sum(job.duration for job in members) / 3600, 4)}
        for group, members in sorted(groups.items())
    ]
