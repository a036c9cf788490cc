"""The whole pattern, end to end: real client.py, server.py and cronjob.py processes against the emulator."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import pytest
import requests

from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT, Stack, api_headers, json_lines, transcript_files, wait_for


def submitted_job_id(stack: Stack) -> str:
    result = stack.client("--list", "--json")
    jobs = json_lines(result.stdout)
    assert len(jobs) == 1, jobs
    return jobs[0]["job_id"]


def answered(stack: Stack, job_id: str, at_least: int = 1) -> list[dict]:
    """The notification attempts for `job_id` that got an HTTP answer, once there are `at_least` of them."""
    found = [d for d in stack.emulator.deliveries() if d["job_id"] == job_id and isinstance(d["outcome"], int)]
    return found if len(found) >= at_least else []


def wait_until_status(stack: Stack, job_id: str, status: str, timeout: float = 20) -> None:
    def reached() -> bool:
        job = stack.store().find(job_id)
        return job is not None and job.status == status
    wait_for(reached, timeout=timeout, message=f"job {job_id} to be {status}")


def test_happy_path_by_webhook(served: Stack) -> None:
    result = served.client()
    assert result.returncode == 0, result.stderr
    job_id = submitted_job_id(served)
    wait_until_status(served, job_id, "done")
    stored = served.transcripts / f"{job_id}.json"
    assert stored.read_bytes() == served.emulator.transcript_bytes(job_id)
    listed = json_lines(served.client("--list", "--json").stdout)[0]
    assert listed["status"] == "done" and listed["transcript"] == str(stored) and listed["error"] is None
    assert json.loads(stored.read_bytes())["job"]["tracking"]["reference"] == listed["reference"]


def job_with_lost_notification(stack: Stack) -> str:
    """Submit with client.py while the emulator drops every notification; wait until the job is done there."""
    stack.emulator.set_faults(drop_fraction=1.0)
    stack.start_server()
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the emulator to finish the job")
    return job_id


def test_lost_notification_is_recovered_by_cronjob(stack: Stack) -> None:
    job_id = job_with_lost_notification(stack)
    assert stack.store().find(job_id).status == "running"

    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stderr
    assert "recovered 1" in result.stdout
    assert stack.store().find(job_id).status == "done"
    assert (stack.transcripts / f"{job_id}.json").read_bytes() == stack.emulator.transcript_bytes(job_id)


def test_cronjob_respects_the_grace_period(stack: Stack) -> None:
    job_id = job_with_lost_notification(stack)
    result = stack.cronjob("--grace", "3600")
    assert result.returncode == 0 and "checked 0" in result.stdout
    assert stack.store().find(job_id).status == "running"


def test_notifications_while_the_server_is_down_are_recovered(stack: Stack) -> None:
    """Speechmatics gives up after its retries; the transcript must still arrive."""
    assert stack.client().returncode == 0  # no server running at all
    job_id = submitted_job_id(stack)
    wait_for(lambda: any("Sending notification failed" in e["message"]
                         for e in stack.emulator.job(job_id).get("errors", [])),
             message="Speechmatics to give up on the notification")
    stack.start_server()
    assert stack.cronjob("--all").returncode == 0
    assert stack.store().find(job_id).status == "done"


def test_duplicate_notifications_write_once(stack: Stack) -> None:
    stack.emulator.set_faults(duplicate_fraction=1.0)
    stack.start_server()
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    wait_until_status(stack, job_id, "done")
    deliveries = wait_for(lambda: answered(stack, job_id, at_least=2), message="both copies of the notification")
    assert all(d["outcome"] == 200 for d in deliveries), deliveries
    assert stack.server_log().count(f"job={job_id} status=success outcome=done") == 1
    assert stack.server_log().count(f"job={job_id} status=success outcome=duplicate") >= 1
    assert len(transcript_files(stack.transcripts)) == 1


def test_rejected_job_records_the_reason(stack: Stack) -> None:
    stack.emulator.set_faults(reject_data_names=["*.wav"])
    stack.start_server()
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    wait_until_status(stack, job_id, "rejected")
    job = stack.store().find(job_id)
    assert job.error and job.transcript is None
    assert transcript_files(stack.transcripts) == []


def test_expired_job_is_marked_expired_by_cronjob(stack: Stack) -> None:
    stack.emulator.set_faults(drop_fraction=1.0)
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    stack.emulator.expire(job_id)
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.store().find(job_id).status == "expired"


@pytest.mark.emulator(processing_seconds=3600)
def test_deleted_job_is_marked_deleted_by_cronjob(stack: Stack) -> None:
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    deleted = requests.delete(f"{stack.emulator.url}/jobs/{job_id}", params={"force": "true"},
                              headers=api_headers(), timeout=10)
    assert deleted.status_code == 200
    assert stack.cronjob("--all").returncode == 0
    assert stack.store().find(job_id).status == "deleted"


def test_missing_transcript_of_a_done_job_is_repaired(served: Stack) -> None:
    assert served.client().returncode == 0
    job_id = submitted_job_id(served)
    wait_until_status(served, job_id, "done")
    stored = served.transcripts / f"{job_id}.json"
    original = stored.read_bytes()
    stored.unlink()
    result = served.cronjob()
    assert result.returncode == 0 and "recovered 0, repaired 1" in result.stdout
    assert stored.read_bytes() == original


@pytest.mark.emulator(processing_seconds=0.0)
def test_many_files_with_a_fast_emulator(served: Stack) -> None:
    """Notifications race the client's own bookkeeping: every job must still end done."""
    audio = [served.tmp / f"clip{i}.wav" for i in range(12)]
    for path in audio:
        shutil.copy(ROOT / "example.wav", path)
    result = served.client(*map(str, audio))
    assert result.returncode == 0, result.stderr
    jobs = json_lines(served.client("--list", "--json").stdout)
    assert len(jobs) == 12
    for job in jobs:
        wait_until_status(served, job["job_id"], "done")


def test_server_survives_sigkill_and_restart(stack: Stack) -> None:
    stack.start_server()
    stack.stop_server(signal.SIGKILL)
    assert stack.client().returncode == 0
    job_id = submitted_job_id(stack)
    stack.start_server()
    result = stack.cronjob("--all")
    assert result.returncode == 0
    wait_until_status(stack, job_id, "done")


def test_scripts_have_help(stack: Stack) -> None:
    for script in ("client.py", "server.py", "cronjob.py"):
        result = subprocess.run([RUNTIME_PYTHON, str(ROOT / script), "--help"], capture_output=True, text=True,
                                check=False, env=stack.env())
        assert result.returncode == 0 and "DATABASE_URL" in result.stdout, script
