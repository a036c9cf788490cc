"""What Speechmatics recorded about a job that its status does not say: notifications it could not deliver, and
paid add-ons (translation, summarization, ...) that failed on a job that is nonetheless `done`.

Each is one line on the job's row (`notice`), shown by `client.py --list` and counted by /metrics over the last
day, so nothing hides behind "done". cronjob.py records failed notifications from the job's `errors` as it
reconciles the job (the API appends one per failed attempt); a follower of the job store records failed add-ons
from the json-v2's `metadata.*_errors` in the very transaction that makes the job `done`.
"""

from __future__ import annotations

import os
from typing import Any

import ijson

from notification_flow.api import NOTIFICATION_ERRORS
from notification_flow.db import Row, Transaction
from notification_flow.redaction import redact_urls_in

NOTIFICATION, ADDON = "notification failed", "add-on failed"
GAVE_UP = "Sending notification failed"  # Speechmatics' last entry, once every attempt has failed
DAY = 86400


def notification_notice(details: dict[str, Any]) -> str | None:
    """The job's failed notification attempts, as one line: how many, and what the last one met."""
    failed = failed_notifications(messages(details))
    if not failed:
        return None
    return f"{NOTIFICATION} ({len(failed)} attempts at Speechmatics): {redact_urls_in(failed[-1])}"[:500]


def messages(job: dict[str, Any]) -> list[str]:
    """The messages of the job's `errors`, as the API shows them."""
    errors = job.get("errors")
    return [str(item.get("message")) for item in errors if isinstance(item, dict)] if isinstance(errors, list) else []


def failed_notifications(errors: list[str]) -> list[str]:
    """One message per failed notification attempt (not the closing "Sending notification failed")."""
    return [message for message in errors if message.startswith(NOTIFICATION_ERRORS) and message != GAVE_UP]


def record_notification_failures(store: Any, job_id: str, details: dict[str, Any]) -> None:
    """Record what the API says of the job's notifications (cronjob.py, for each job it reconciles)."""
    notice = notification_notice(details)
    if notice is None:
        return
    with store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET notice = $1 WHERE job_id = $2 AND (notice IS NULL OR notice NOT LIKE $3)",
                   notice, job_id, f"{ADDON}%")  # a failed add-on is the more useful line to keep


def failed_addons(path: str) -> list[str]:
    """The add-ons whose `metadata.<name>_errors` the json-v2 transcript at `path` holds; read only as far as
    the end of `metadata`."""
    failed = []
    with open(path, "rb") as transcript:
        for prefix, event, value in ijson.parse(transcript):
            if prefix == "metadata" and event == "map_key" and str(value).endswith("_errors"):
                failed.append(str(value).removesuffix("_errors"))
            elif prefix == "metadata" and event == "end_map":
                break
    return failed


def addon_follower(tx: Transaction, row: Row) -> None:
    """A job-store follower: a job that has just become `done` with failed add-ons gets the notice."""
    path = row.get("transcript")
    if row.get("status") != "done" or not path or not os.path.isfile(path):
        return  # not done, or transcripts stored as objects: nothing local to read
    try:
        failed = failed_addons(path)
    except (OSError, ijson.JSONError):  # published only after it was checked whole: a notice is not worth a move
        return
    if failed:
        tx.execute("UPDATE jobs SET notice = $1 WHERE reference = $2", f"{ADDON}: {', '.join(failed)}",
                   row["reference"])


def notice_counts(store: Any) -> dict[tuple[str, ...], float]:
    """Jobs created in the last day with a notice, by kind, for /metrics: one range of a partial index."""
    with store.database.transaction(write=False) as tx:
        rows = tx.execute("SELECT notice FROM jobs WHERE notice IS NOT NULL AND created_at > $1", tx.now() - DAY)
    counts = {("notification",): 0.0, ("addon",): 0.0}
    for row in rows:
        counts[("addon",) if row["notice"].startswith(ADDON) else ("notification",)] += 1
    return counts
