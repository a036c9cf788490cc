"""The reconciler's last pass, kept in the database: cronjob.py runs elsewhere (a timer, another host) and
exits between passes, so the server can only tell when it last ran, and what it found, from a shared record.

One row (`id = 1`), overwritten by every pass, so reading it costs the same after a year as after a day.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from notification_flow.db import Transaction
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import ReconcileOutcome as Outcome

RECOVERED = (Outcome.RECOVERED, Outcome.REPAIRED)


def pass_counts(summary: Counter[str]) -> dict[str, int]:
    """The four numbers the summary line and the metrics share."""
    return {"checked": summary["checked"], "recovered": sum(summary[name] for name in RECOVERED),
            "still_running": summary[Outcome.STILL_RUNNING], "failed": summary[Outcome.FAILED]}


def record_pass(store: JobStore, summary: Counter[str], duration: float) -> None:
    """Overwrite the one row with this pass; its end time comes from the database's clock, like every time
    the server compares."""
    counts = pass_counts(summary)
    with store.database.transaction() as tx:
        now = tx.now()
        tx.execute("DELETE FROM reconciler_pass WHERE id = 1")
        tx.execute("INSERT INTO reconciler_pass (id, ended_at, duration, checked, recovered, still_running, failed) "
                   "VALUES (1, $1, $2, $3, $4, $5, $6)", now, duration, counts["checked"], counts["recovered"],
                   counts["still_running"], counts["failed"])


def last_pass(tx: Transaction) -> dict[str, Any] | None:
    rows = tx.execute("SELECT ended_at, duration, checked, recovered, still_running, failed FROM reconciler_pass "
                      "WHERE id = 1")
    return {key: float(value) for key, value in rows[0].items()} if rows else None
