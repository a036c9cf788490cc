"""Four ways a job could end wrong under faults, each driven through real processes: the emulator, server.py under
gunicorn, client.py and cronjob.py. Each of these failed before the rule it tests was in place."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import requests

from tests.integration.support import Stack, created_jobs, database_held, submit_like_client, transcript_files, wait_for


def age_rows(stack: Stack, seconds: float) -> None:
    """Pretend the rows were last touched `seconds` ago, as if that much time had passed."""
    with stack.store().database.transaction() as tx:
        tx.execute("UPDATE jobs SET created_at = created_at - $1, updated_at = updated_at - $1", seconds)


def status_of_reference(stack: Stack, reference: str) -> str:
    return stack.store().find_by_reference(reference).status


@pytest.mark.emulator(create_latency_ms=10_000)  # long enough for client and cronjob to run first on a busy machine
def test_a_job_created_after_its_row_was_judged_not_created_is_adopted_and_done(served: Stack) -> None:
    """The API takes longer to create the job than the client waits and than any deadline: the row is judged
    `submit_failed` by a listing taken before the job existed, and the job's notification must still win."""
    result = served.client(SPEECHMATICS_TIMEOUT="2")
    assert result.returncode == 1 and "cronjob.py" in result.stderr
    [row] = served.store().jobs()
    assert row.status == "submitting"
    age_rows(served, 3600)  # the client's heartbeat is long past every deadline
    assert "submit failed 1" in served.cronjob("--all").stdout
    assert status_of_reference(served, row.reference) == "submit_failed"
    [created] = wait_for(lambda: created_jobs(served), timeout=30, message="the slow API to create the job")
    wait_for(lambda: status_of_reference(served, row.reference) == "done", timeout=30,
             message="the job's notification to adopt the row")
    job = served.store().find_by_reference(row.reference)
    assert job.job_id == created["id"] and job.error is None
    assert Path(job.transcript).read_bytes() == served.emulator.transcript_bytes(created["id"])


@pytest.mark.parametrize("fault", ["truncate_transcript_fraction", "empty_transcript_fraction"])
def test_a_truncated_or_empty_download_is_never_published(stack: Stack, fault: str) -> None:
    stack.emulator.set_faults(**{fault: 1.0})
    stack.start_server()
    _, job_id = submit_like_client(stack, {"contents": ["transcript.txt"]})  # the server must fetch
    wait_for(lambda: [d for d in stack.emulator.deliveries() if d["job_id"] == job_id and d["outcome"] == 503],
             message="the server to refuse the notification whose transcript it could not fetch whole")
    assert transcript_files(stack.transcripts) == [] and stack.store().find(job_id).status == "running"
    failed = stack.cronjob("--all")
    assert failed.returncode == 1 and "failed 1" in failed.stdout
    assert transcript_files(stack.transcripts) == [] and stack.store().find(job_id).status == "running"
    stack.emulator.set_faults(**{fault: 0.0})
    assert stack.cronjob("--all").returncode == 0
    assert stack.store().find(job_id).status == "done"
    assert (stack.transcripts / f"{job_id}.json").read_bytes() == stack.emulator.transcript_bytes(job_id)


def worker_pids(master: int) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.parent.name))
    return pids


def test_a_worker_restarted_while_the_database_is_locked_does_not_stop_the_server(stack: Stack) -> None:
    stack.emulator.set_faults(drop_fraction=1.0)
    server = stack.start_server(workers=2)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    workers = wait_for(lambda: len(worker_pids(server.pid)) == 2 and worker_pids(server.pid), message="2 workers")
    with database_held(stack.database_url, "jobs", "schema_version"):
        os.kill(min(workers), signal.SIGKILL)
        wait_for(lambda: len(worker_pids(server.pid) - workers) == 1, timeout=15, message="a new worker")
        threading.Event().wait(8)  # the outage lasts longer than any lock timeout
        assert server.poll() is None, stack.server_log()
    assert server.poll() is None, stack.server_log()
    body = stack.emulator.transcript_bytes(job_id)
    answers = [stack.notify(job_id, body=body, content_type="application/json").status_code for _ in range(4)]
    assert answers == [200] * 4  # whichever worker answers
    assert stack.store().find(job_id).status == "done"
    assert requests.get(stack.webhook_url.replace("/webhook", "/healthz"), timeout=5).status_code == 200


@pytest.mark.parametrize("success_body", ["transcript", "empty: the server fetches it"])
@pytest.mark.parametrize("order", [("error", "success"), ("success", "error")])
def test_conflicting_notifications_end_the_same_whatever_their_order(served: Stack, order: tuple[str, str],
                                                                     success_body: str) -> None:
    """With the row still `submitting` when the first arrives (the client has not recorded the id yet)."""
    served.emulator.set_faults(drop_fraction=1.0)  # only the notifications this test sends
    reference, job_id = submit_like_client(served, {"contents": ["transcript"]}, record=False)
    wait_for(lambda: served.emulator.job(job_id)["status"] == "done", message="the job to finish")
    transcript = served.emulator.transcript_bytes(job_id)
    for number, status in enumerate(order):
        body = transcript if status == "success" and success_body == "transcript" else b""
        answer = served.notify(job_id, status=status, body=body, content_type="application/json", reference=reference)
        assert answer.status_code == 200
        if number == 0:
            served.store().record_created(reference, job_id)  # the client catches up in between
    job = served.store().find(job_id)
    assert job.status == "done", job
    assert (served.transcripts / f"{job_id}.json").read_bytes() == transcript
