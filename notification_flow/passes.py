"""The reconciler's last pass, kept in the database: cronjob.py runs elsewhere (a timer, another host) and
exits between passes, so the server can only tell when it last ran, and what it found, from a shared record.

One row (`id = 1`), overwritten by every pass, so reading it costs the same after a year as after a day.
`complete` is 0 for a pass that was cut short (the API unreadable, the database away, a defect): its
counts are then not the whole story, which the alert `TranscribeReconcilerPassCutShort` says.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from notification_flow.db import Transaction
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import ReconcileOutcome as Outcome

COUNTS = ("checked", "recovered", "repaired", "still_running", "failed")


def pass_counts(summary: Counter[str]) -> dict[str, int]:
    """The numbers the summary line and the metrics share."""
    return {"checked": summary["checked"], "recovered": summary[Outcome.RECOVERED],
            "repaired": summary[Outcome.REPAIRED], "still_running": summary[Outcome.STILL_RUNNING],
            "failed": summary[Outcome.FAILED]}


def record_pass(store: JobStore, summary: Counter[str], duration: float, complete: bool = True) -> None:
    """Overwrite the one row with this pass; its end time comes from the database's clock, like every time
    the server compares."""
    counts = pass_counts(summary)
    with store.database.transaction() as tx:
        now = tx.now()
        tx.execute("DELETE FROM reconciler_pass WHERE id = 1")
        tx.execute("INSERT INTO reconciler_pass (id, ended_at, duration, checked, recovered, repaired, still_running, "
                   "failed, complete) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)", now, duration,
                   *(counts[name] for name in COUNTS), int(complete))


def last_pass(tx: Transaction) -> dict[str, Any] | None:
    rows = tx.execute("SELECT ended_at, duration, checked, recovered, repaired, still_running, failed, complete "
                      "FROM reconciler_pass WHERE id = 1")
    return {key: float(value) for key, value in rows[0].items()} if rows else None
