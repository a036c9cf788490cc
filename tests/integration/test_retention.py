"""Keeping data only as long as it is needed (issue 23), through the real scripts against the emulator:
DELETE_AFTER_STORE, the repair sweep's lost transcripts, KEEP_TRANSCRIPTS_DAYS and `client.py --forget`."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from notification_flow.jobs import Job, open_store
from notification_flow.lifecycle import Event
from notification_flow.retention import LOST, want_deletion
from notification_flow.transcripts import TranscriptFiles
from seaweed import SeaweedFS
from tests.integration.support import Stack, json_lines, submit_like_client, wait_for
from tests.integration.test_formats import recovered_with_formats
from tests.integration.test_s3 import object_of, stored_objects
from tests.stores import holds_transcript

DELETE_ROUTE = {"api_fault_routes": ("DELETE /v2/jobs/*",), "api_500_fraction": 1.0}


def remote_status(stack: Stack, job_id: str) -> str:
    return stack.emulator.job(job_id)["status"]


def deleted_and_recorded(stack: Stack, job_id: str) -> bool:
    """Deleted at the emulator, and the deletion recorded on the row (which the server does just after)."""
    job = stack.store().find(job_id)
    return remote_status(stack, job_id) == "deleted" and job is not None and job.remote_deleted_at is not None


def row(stack: Stack, job_id: str) -> Job:
    job = stack.store().find(job_id)
    assert job is not None, job_id
    return job


def intact(stack: Stack, job_id: str) -> bool:
    """The job's file is there and holds its complete json-v2 transcript."""
    return holds_transcript(TranscriptFiles(stack.transcripts), job_id)


def finished_unnotified(stack: Stack, count: int = 1, **notification: Any) -> list[str]:
    """Jobs done at the emulator whose notifications were all lost."""
    stack.emulator.set_faults(drop_fraction=1.0)
    job_ids = [submit_like_client(stack, {"contents": ["transcript"], **notification})[1] for _ in range(count)]
    wait_for(lambda: all(remote_status(stack, j) == "done" for j in job_ids), message="jobs to finish")
    stack.emulator.set_faults(drop_fraction=0.0)
    return job_ids


def pending_deletions(stack: Stack) -> list[str]:
    with stack.store().database.transaction(write=False) as tx:
        return [r["job_id"] for r in tx.execute("SELECT job_id FROM remote_deletions")]


def transcript_reads(stack: Stack) -> int:
    return sum(v for k, v in stack.emulator.stats()["requests"].items() if "transcript" in k)


def deletes_sent(stack: Stack) -> int:
    return sum(v for k, v in stack.emulator.stats()["requests"].items() if k.startswith("DELETE"))


# -- DELETE_AFTER_STORE ---------------------------------------------------------------------------------
def test_a_job_finished_by_notification_is_deleted_at_speechmatics_and_its_file_kept(stack: Stack) -> None:
    stack.start_server(DELETE_AFTER_STORE=1)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: deleted_and_recorded(stack, job_id), message="the job to be deleted at the emulator")
    job = row(stack, job_id)
    assert job.status == "done" and job.remote_deleted_at is not None and intact(stack, job_id)
    assert pending_deletions(stack) == []
    listed = stack.client("--list")
    assert "deleted at Speechmatics" in listed.stdout, listed.stdout
    assert json_lines(stack.client("--list", "--json").stdout)[0]["deleted_at_speechmatics"]


@pytest.mark.emulator(reject_fraction=1.0)
def test_a_job_rejected_by_notification_is_deleted_too(stack: Stack) -> None:
    stack.start_server(DELETE_AFTER_STORE=1)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: deleted_and_recorded(stack, job_id), message="the job to be deleted at the emulator")
    job = row(stack, job_id)
    assert job.status == "rejected" and job.error and job.remote_deleted_at is not None


def test_a_job_recovered_by_cronjob_after_a_lost_notification_is_deleted(stack: Stack) -> None:
    job_ids = finished_unnotified(stack, 3)
    result = stack.cronjob("--all", "--delete-after-store")
    assert result.returncode == 0, result.stdout + result.stderr
    for job_id in job_ids:
        assert remote_status(stack, job_id) == "deleted"
        assert row(stack, job_id).status == "done" and row(stack, job_id).remote_deleted_at is not None
        assert intact(stack, job_id)


def test_a_job_repaired_by_cronjob_is_deleted_once_its_file_is_back(stack: Stack) -> None:
    [job_id] = finished_unnotified(stack)
    assert stack.cronjob("--all").returncode == 0  # recovered, and kept at Speechmatics (the setting is off)
    (stack.transcripts / f"{job_id}.json").unlink()
    result = stack.cronjob("--all", DELETE_AFTER_STORE=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired 1" in result.stdout and intact(stack, job_id)
    assert remote_status(stack, job_id) == "deleted" and row(stack, job_id).remote_deleted_at is not None


@pytest.mark.emulator(**DELETE_ROUTE)
def test_a_delete_answered_500_is_finished_by_the_next_pass(stack: Stack) -> None:
    stack.start_server(DELETE_AFTER_STORE=1)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: deletes_sent(stack) > 0, message="the server to try its DELETE")
    assert row(stack, job_id).status == "done" and intact(stack, job_id)
    assert remote_status(stack, job_id) == "done" and pending_deletions(stack) == [job_id]
    assert stack.cronjob("--all").returncode == 0  # still answered 500: the wish waits, nothing else fails
    assert pending_deletions(stack) == [job_id]
    stack.emulator.set_faults(api_500_fraction=0.0)
    assert stack.cronjob("--all").returncode == 0
    assert remote_status(stack, job_id) == "deleted" and pending_deletions(stack) == []
    assert intact(stack, job_id) and row(stack, job_id).remote_deleted_at is not None


def test_a_process_killed_between_storing_and_deleting_is_finished_by_the_next_pass(stack: Stack) -> None:
    [job_id] = finished_unnotified(stack)
    path = stack.transcripts / f"{job_id}.json"
    stack.transcripts.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stack.emulator.transcript_bytes(job_id))
    # what a process that died right after its commit leaves: the job done, the wish recorded, no DELETE sent
    store = open_store(stack.database_url, followers=(want_deletion,))
    assert store.record_remote_status(job_id, Event.TRANSCRIPT_STORED, transcript=str(path))
    assert pending_deletions(stack) == [job_id] and remote_status(stack, job_id) == "done"
    assert stack.cronjob("--all").returncode == 0  # the pass carries out the wish, flag or not
    assert remote_status(stack, job_id) == "deleted" and pending_deletions(stack) == [] and intact(stack, job_id)


# -- the repair sweep knows what it can no longer fetch --------------------------------------------------
def test_a_deleted_jobs_file_removed_by_hand_is_reported_lost_once_not_retried_every_pass(stack: Stack) -> None:
    [job_id] = finished_unnotified(stack)
    assert stack.cronjob("--all", DELETE_AFTER_STORE=1).returncode == 0
    assert remote_status(stack, job_id) == "deleted"
    (stack.transcripts / f"{job_id}.json").unlink()
    reads = transcript_reads(stack)
    first = stack.cronjob("--all")
    output = first.stdout + first.stderr
    assert f"job {job_id}" in output and "transcript lost" in output, output
    job = row(stack, job_id)
    assert job.status == "done" and job.transcript is None and job.error == LOST
    second = stack.cronjob("--all")
    assert "transcript lost" not in second.stdout + second.stderr
    assert transcript_reads(stack) == reads  # never asked of Speechmatics, which no longer has it
    stack.start_server()
    metrics = requests.get(f"http://127.0.0.1:{stack.server_port}/metrics", timeout=5).text
    assert "transcribe_transcripts_lost_last_day 1.0" in metrics, metrics


# -- KEEP_TRANSCRIPTS_DAYS -------------------------------------------------------------------------------
def age(stack: Stack, job_id: str, days: float) -> None:
    """Make the job look created `days` earlier than it was."""
    with stack.store().database.transaction() as tx:
        tx.execute("UPDATE jobs SET created_at = created_at - $1 WHERE job_id = $2", days * 86400, job_id)


def test_transcripts_older_than_the_setting_go_newer_ones_stay_and_a_late_notification_writes_nothing(
        stack: Stack) -> None:
    old, new = finished_unnotified(stack, 2)
    bodies = {job_id: stack.emulator.transcript_bytes(job_id) for job_id in (old, new)}
    assert stack.cronjob("--all").returncode == 0
    age(stack, old, 10)
    result = stack.cronjob("--all", KEEP_TRANSCRIPTS_DAYS=7)
    assert result.returncode == 0, result.stdout + result.stderr
    purged = row(stack, old)
    assert purged.status == "purged" and not (stack.transcripts / f"{old}.json").exists()
    assert (purged.audio, purged.transcript, purged.error) == ("", None, None)
    assert row(stack, new).status == "done" and intact(stack, new)
    assert stack.cronjob("--all", KEEP_TRANSCRIPTS_DAYS=7).returncode == 0  # nothing more to do, nothing fetched
    assert not (stack.transcripts / f"{old}.json").exists()
    stack.start_server()
    answer = stack.notify(old, body=bodies[old], content_type="application/json")
    assert answer.status_code == 200 and answer.json()["outcome"] == "duplicate"
    assert not (stack.transcripts / f"{old}.json").exists() and row(stack, old) == purged


def test_retention_removes_objects_on_s3(s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    old, new = finished_unnotified(s3_stack, 2)
    assert s3_stack.cronjob("--all").returncode == 0
    assert object_of(s3_stack, seaweedfs, old) and object_of(s3_stack, seaweedfs, new)
    age(s3_stack, old, 10)
    result = s3_stack.cronjob("--all", KEEP_TRANSCRIPTS_DAYS=7)
    assert result.returncode == 0, result.stdout + result.stderr
    assert object_of(s3_stack, seaweedfs, old) is None and row(s3_stack, old).status == "purged"
    assert object_of(s3_stack, seaweedfs, new) == s3_stack.emulator.transcript_bytes(new)


# -- client.py --forget ----------------------------------------------------------------------------------
def test_forget_a_done_job_removes_everything_once_and_a_notification_after_it_writes_nothing(stack: Stack) -> None:
    [job_id] = finished_unnotified(stack)
    body = stack.emulator.transcript_bytes(job_id)
    assert stack.cronjob("--all").returncode == 0 and intact(stack, job_id)
    first = stack.client("--forget", job_id)
    assert first.returncode == 0, first.stderr
    assert f"transcript {stack.transcripts / job_id}.json" in first.stdout and "the job at Speechmatics" in first.stdout
    assert remote_status(stack, job_id) == "deleted" and not (stack.transcripts / f"{job_id}.json").exists()
    job = row(stack, job_id)
    assert (job.status, job.audio, job.transcript, job.error) == ("purged", "", None, None)
    again = stack.client("--forget", job_id)
    assert again.returncode == 0 and "nothing left to remove" in again.stdout, again.stdout + again.stderr
    stack.start_server()
    for _ in range(2):  # late, and duplicated
        answer = stack.notify(job_id, body=body, content_type="application/json")
        assert answer.status_code == 200
    assert not (stack.transcripts / f"{job_id}.json").exists() and row(stack, job_id) == job
    assert stack.cronjob("--all").returncode == 0 and not (stack.transcripts / f"{job_id}.json").exists()


@pytest.mark.emulator(processing_seconds=3600)
def test_forget_a_running_job_by_its_reference_deletes_it_forcibly(stack: Stack) -> None:
    reference, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    assert remote_status(stack, job_id) == "running"
    result = stack.client("--forget", reference)
    assert result.returncode == 0, result.stderr
    assert "the job at Speechmatics" in result.stdout
    assert remote_status(stack, job_id) == "deleted" and row(stack, job_id).status == "purged"
    assert stack.cronjob("--all").returncode == 0 and row(stack, job_id).status == "purged"


def test_forget_an_unknown_id_says_so_and_changes_nothing(stack: Stack) -> None:
    [job_id] = finished_unnotified(stack)
    result = stack.client("--forget", "zzzzzzzzzz")
    assert result.returncode == 1 and "nothing removed" in result.stderr, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert row(stack, job_id).status == "running" and remote_status(stack, job_id) == "done"


# -- every format goes with the JSON ---------------------------------------------------------------------
def done_with_formats(stack: Stack) -> str:
    """A job submitted with --format srt,txt whose notification was lost, recovered by cronjob.py."""
    stack.emulator.set_faults(drop_fraction=1.0)
    return recovered_with_formats(stack)


def test_forget_removes_the_subtitles_and_text_too(stack: Stack) -> None:
    job_id = done_with_formats(stack)
    assert all((stack.transcripts / f"{job_id}.{fmt}").exists() for fmt in ("json", "srt", "txt"))
    assert stack.client("--forget", job_id).returncode == 0
    assert not [path.name for path in stack.transcripts.glob(f"{job_id}.*")]


def test_retention_removes_the_subtitles_and_text_objects_too(s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    job_id = done_with_formats(s3_stack)
    names = {key.rsplit("/", 1)[-1] for key in stored_objects(s3_stack, seaweedfs)}
    assert {f"{job_id}.{fmt}" for fmt in ("json", "srt", "txt")} <= names
    age(s3_stack, job_id, 10)
    assert s3_stack.cronjob("--all", KEEP_TRANSCRIPTS_DAYS=7).returncode == 0
    assert not [key for key in stored_objects(s3_stack, seaweedfs) if job_id in key]


def test_a_transcript_that_cannot_be_removed_costs_its_own_purge_not_the_others(stack: Stack) -> None:
    stuck, other = finished_unnotified(stack, 2)
    assert stack.cronjob("--all").returncode == 0
    (stack.transcripts / f"{stuck}.srt").mkdir()  # what an unlink cannot remove
    for job_id in (stuck, other):
        age(stack, job_id, 10)
    result = stack.cronjob("--all", KEEP_TRANSCRIPTS_DAYS=7)
    assert "Traceback" not in result.stderr and f"job {stuck} not purged" in result.stderr, result.stderr
    assert row(stack, other).status == "purged" and row(stack, stuck).status == "done"
