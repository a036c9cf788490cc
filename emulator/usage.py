"""GET /v2/usage and the timestamp parsing of GET /v2/jobs?created_before=.

Usage counts every job that finished ``done`` (deleting it later does not change usage, as the
docs say), grouped by day of creation. Unlike the service, today's jobs are included, so a test
can see its own jobs counted at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
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


def report(jobs: list[Job], since_text: str | None, until_text: str | None) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    since = _day(since_text, today.replace(day=1))
    until = _day(until_text, today)
    counted = [
        job for job in jobs
        if job.billable and since <= datetime.fromtimestamp(job.created_ts, UTC).date() <= until
    ]
    summary = _group(counted, lambda job: ())
    details = _group(counted, _detail_key)
    return {
        "since": f"{since.isoformat()}T00:00:00Z",
        "until": f"{until.isoformat()}T23:59:59Z",
        "summary": summary,
        "details": details,
    }


def _detail_key(job: Job) -> tuple[tuple[str, str], ...]:
    transcription = job.config.get("transcription_config") or {}
    key = [("language", str(transcription.get("language", "")))]
    model = transcription.get("model") or transcription.get("operating_point")
    if model in MODELS:
        key.append(("operating_point", model))
    return tuple(key)


def _group(jobs: list[Job], key: Any) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[key(job)].append(job)
    return [
        {"mode": "batch", "type": "transcription", **dict(group), "count": len(members),
         "duration_hrs": round(sum(job.duration for job in members) / 3600, 4)}
        for group, members in sorted(groups.items())
    ]
