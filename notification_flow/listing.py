"""`client.py --list`: the recorded jobs as a table for people or a JSON array for programs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from notification_flow.jobs import Job, JobStore


def show_jobs(store: JobStore, as_json: bool) -> None:
    jobs = store.jobs()
    if as_json:
        print(json.dumps([job_summary(job) for job in jobs], indent=2))
        return
    print(f"{'job_id':<12} {'reference':<32} {'status':<13} {'updated':<19} transcript / error")
    for job in jobs:
        print(f"{job.job_id or '-':<12} {job.reference:<32} {job.status:<13} {timestamp(job.updated_at):<19} "
              f"{job.transcript or job.error or ''}")


def job_summary(job: Job) -> dict[str, Any]:
    return {"job_id": job.job_id, "reference": job.reference, "audio": job.audio, "status": job.status,
            "transcript": job.transcript, "error": job.error, "created_at": timestamp(job.created_at),
            "updated_at": timestamp(job.updated_at)}


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
