"""Baseline for cronjob.py: a RE-IMPLEMENTATION of the reconcile loop in Speechmatics' original
notification_flow example. It reproduces that example's pattern, not its code.

The pattern: select every job the database still holds as running, ask the API for each job's status with
one request after another, and write the status back. Like the original it never fetches a transcript (so
a lost notification still loses the data: jobs end `done` without a file), and it has no rate limiting,
no retries and no leases. Only a timeout was added, so that a benchmark can never hang on it.

    DATABASE_URL=… SPEECHMATICS_API_KEY=… SPEECHMATICS_BATCH_URL=… python -m bench.original_loop
"""

from __future__ import annotations

import os

import requests

from notification_flow.jobs import open_store
from notification_flow.lifecycle import Event

# The status the API reports, as the event the store knows (the original wrote the status as it came).
EVENTS = {"done": Event.TRANSCRIPT_STORED, "rejected": Event.REJECTED, "expired": Event.EXPIRED,
          "deleted": Event.DELETED}


def main() -> None:
    store = open_store(os.environ["DATABASE_URL"])
    base_url = os.environ["SPEECHMATICS_BATCH_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['SPEECHMATICS_API_KEY']}"}
    checked = updated = 0
    for job in store.jobs(status="running"):
        response = requests.get(f"{base_url}/jobs/{job.job_id}", headers=headers, timeout=30)
        status = response.json()["job"]["status"]
        checked += 1
        if status in EVENTS and store.record_remote_status(job.job_id or "", EVENTS[status]):
            updated += 1
    print(f"checked {checked}, updated {updated}", flush=True)


if __name__ == "__main__":
    main()
