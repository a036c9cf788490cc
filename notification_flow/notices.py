"""What Speechmatics recorded about a job that its status does not say: notifications it could not deliver, and
paid add-ons (translation, summarization, ...) that failed on a job that is nonetheless `done`.

Each is one line on the job's row (`notice`), shown by `client.py --list` and counted by /metrics over the last
day, so nothing hides behind "done". cronjob.py records failed notifications from the job's `errors` as it
reconciles the job (the API appends one per failed attempt); failed add-ons, found in the json-v2's
`metadata.*_errors` as it is checked, are recorded by the very move that makes the job `done`.
"""

from __future__ import annotations

from typing import Any

from notification_flow.api import NOTIFICATION_ERRORS
from notification_flow.db import Transaction
from notification_flow.logs import printable
from notification_flow.metrics import gauge
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


def addon_notice(failed_addons: str | None) -> str | None:
    """The notice of a transcript whose paid add-ons failed (`metadata.<name>_errors`, found as it was checked,
    jsonv2.py): recorded by the move that makes the job `done`, whichever store keeps the transcript."""
    return printable(f"{ADDON}: {failed_addons}")[:500] if failed_addons else None  # names come from the body


def gauges(tx: Transaction) -> list[Any]:
    """Jobs created in the last day with a notice, by kind, for /metrics (in the scrape's one transaction):
    one range of a partial index."""
    rows = tx.execute("SELECT notice FROM jobs WHERE notice IS NOT NULL AND created_at > $1", tx.now() - DAY)
    counts = {("notification",): 0.0, ("addon",): 0.0}
    for row in rows:
        counts[("addon",) if row["notice"].startswith(ADDON) else ("notification",)] += 1
    return [gauge("jobs_with_notice_last_day", "Jobs created in the last day whose notification Speechmatics could "
                  "not deliver, or whose paid add-on failed (notices.py)", counts, ["kind"])]
