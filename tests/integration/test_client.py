"""client.py: intent recorded before the API call, clear errors, and nothing recorded for bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import pytest

from notification_flow.auth import auth_header
from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT, SECRET, Stack, blackhole, created_jobs, json_lines, wait_for


def listed(stack: Stack) -> list[dict]:
    return json_lines(stack.client("--list", "--json").stdout)


def test_list_json_shape(stack: Stack) -> None:
    assert stack.client().returncode == 0
    [job] = listed(stack)
    assert {"job_id", "reference", "status", "transcript", "error"} <= job.keys()
    assert job["status"] == "running" and len(job["reference"]) == 32
    table = stack.client("--list").stdout
    assert job["job_id"] in table and "running" in table


def test_job_config_carries_notification_reference_and_extras(stack: Stack) -> None:
    extra = stack.tmp / "extra.json"
    extra.write_text(json.dumps({"transcription_config": {"diarization": "speaker"},
                                 "tracking": {"title": "call 42"}}))
    assert stack.client("--config-file", str(extra), "--language", "de", "--model", "enhanced").returncode == 0
    [job] = listed(stack)
    config = stack.emulator.job(job["job_id"])["config"]
    assert config["transcription_config"] == {"language": "de", "diarization": "speaker", "model": "enhanced"}
    assert config["tracking"] == {"title": "call 42", "reference": job["reference"]}
    [notification] = config["notification_config"]
    assert notification["url"] == stack.webhook_url and notification["contents"] == ["transcript"]
    # this job's own token, bound to its reference; the secret itself never leaves our machines
    assert notification["auth_headers"] == [auth_header(SECRET, job["reference"])]
    assert SECRET not in json.dumps(config)


def test_missing_or_unreadable_file_records_nothing_for_it(stack: Stack) -> None:
    directory = stack.tmp / "a-directory.wav"
    directory.mkdir()
    result = stack.client(str(ROOT / "example.wav"), str(stack.tmp / "missing.wav"), str(directory))
    assert result.returncode == 1
    assert "missing.wav: cannot read" in result.stderr and "a-directory.wav: cannot read" in result.stderr
    assert [job["audio"] for job in listed(stack)] == [str(ROOT / "example.wav")]


def test_wrong_api_key_says_to_check_it(stack: Stack) -> None:
    result = stack.client(SPEECHMATICS_API_KEY="not-the-key")
    assert result.returncode == 1
    assert "check SPEECHMATICS_API_KEY" in result.stderr
    [job] = listed(stack)
    assert job["status"] == "submit_failed" and job["job_id"] is None


def test_timeout_after_upload_is_not_resubmitted_and_cronjob_resolves_it(stack: Stack) -> None:
    with blackhole(stack.emulator.url) as swallowing_url:
        result = stack.client(SPEECHMATICS_BATCH_URL=swallowing_url, SPEECHMATICS_TIMEOUT="2")
    assert result.returncode == 1
    assert "cronjob.py" in result.stderr
    [job] = listed(stack)
    assert job["status"] == "submitting" and job["job_id"] is None
    assert len(created_jobs(stack)) == 1  # no blind resubmission

    resolved = stack.cronjob("--all")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    [job] = listed(stack)
    assert job["job_id"] is not None and job["status"] in ("running", "done")


def test_client_killed_between_submit_and_record_is_recovered(stack: Stack) -> None:
    stack.emulator.set_faults(hold_notifications=True)  # the webhook must not rescue it first
    stack.start_server()
    with blackhole(stack.emulator.url) as swallowing_url:
        client = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "client.py")], cwd=stack.tmp,
                                  env=stack.env(SPEECHMATICS_BATCH_URL=swallowing_url))
        wait_for(lambda: created_jobs(stack), message="the job to be created")
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    [job] = listed(stack)
    assert job["status"] == "submitting" and job["job_id"] is None
    [created] = created_jobs(stack)
    wait_for(lambda: stack.emulator.job(created["id"])["status"] == "done", message="the job to finish")

    assert stack.cronjob("--all").returncode == 0
    [job] = listed(stack)
    assert (job["job_id"], job["status"]) == (created["id"], "done")
    assert (stack.transcripts / f"{created['id']}.json").read_bytes() == stack.emulator.transcript_bytes(created["id"])
    [held] = stack.emulator.held()
    assert stack.emulator.deliver(held["key"])["outcome"] == 200  # the late notification: a duplicate


def test_submission_that_never_reached_the_api_becomes_submit_failed(stack: Stack) -> None:
    dead_url = "http://127.0.0.1:9/v2"  # nothing listens on the discard port
    result = stack.client(SPEECHMATICS_BATCH_URL=dead_url)
    assert result.returncode == 1 and "cannot connect" in result.stderr
    [job] = listed(stack)
    assert job["status"] == "submit_failed"


def test_crash_before_the_api_call_leaves_a_row_that_cronjob_marks_submit_failed(stack: Stack) -> None:
    store = stack.store()
    store.add_submission("0" * 32, "lost.wav")  # what a client killed right after its insert leaves
    assert "still running 1" in stack.cronjob("--all").stdout  # it may still be uploading: leave it
    with store.database.transaction() as tx:  # ...until it has been quiet longer than a live client can be
        tx.execute("UPDATE jobs SET created_at = created_at - 3600, updated_at = updated_at - 3600")
    result = stack.cronjob("--all")
    assert result.returncode == 0 and "submit failed 1" in result.stdout
    assert stack.store().find_by_reference("0" * 32).status == "submit_failed"


@pytest.mark.paced
def test_submissions_stay_under_ten_per_second(stack: Stack) -> None:
    audio = [stack.tmp / f"clip{i}.wav" for i in range(25)]
    for path in audio:
        shutil.copy(ROOT / "example.wav", path)
    result = stack.client(*map(str, audio), "--concurrency", "10")
    assert result.returncode == 0, result.stderr
    stats = stack.emulator.stats()
    assert stats["max_posts_per_second"] <= 10 and stats["rate_limited"] == 0
    assert len(listed(stack)) == 25


@pytest.mark.parametrize("argument", ["--concurrency=0", "--concurrency=11", "--config-file=/nonexistent.json"])
def test_bad_arguments_exit_2(stack: Stack, argument: str) -> None:
    result = stack.client(argument)
    assert result.returncode == 2 and "error:" in result.stderr.strip().splitlines()[-1]
    assert not (stack.tmp / "jobs.db").exists() or listed(stack) == []


THREE_URLS = [{"url": f"https://example.com/{n}"} for n in range(3)]


@pytest.mark.parametrize("config", [
    {"transcription_config": "en"}, {"transcription_config": ["en"]}, {"notification_config": {"url": "x"}},
    {"notification_config": ["https://example.com/hook"]}, {"notification_config": THREE_URLS},
    {"tracking": "reference"}, {"tracking": ["reference"]},
], ids=["transcription str", "transcription list", "notification dict", "notification of str", "four urls",
        "tracking str", "tracking list"])
def test_a_config_file_of_the_wrong_shape_is_one_line_exit_2_and_writes_nothing(stack: Stack, config: dict) -> None:
    """Checked whole before the row is recorded; the API takes at most three notification URLs, and we add one."""
    path = stack.tmp / "config.json"
    path.write_text(json.dumps(config))
    result = stack.client("--config-file", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --config-file"), lines
    assert stack.store().jobs() == [] and created_jobs(stack) == []


@pytest.mark.emulator(api_503_fraction=0.3, rate_limit_post_per_second=0)
def test_an_answered_5xx_is_retried_only_after_checking_no_job_was_made(stack: Stack) -> None:
    audio = [stack.tmp / f"clip{i}.wav" for i in range(8)]
    for path in audio:
        shutil.copy(ROOT / "example.wav", path)
    stack.client(*map(str, audio))
    rows = listed(stack)
    assert len(rows) == 8
    stack.emulator.set_faults(api_503_fraction=0.0)
    references = [job["config"]["tracking"]["reference"] for job in created_jobs(stack)]
    assert len(references) == len(set(references)), "a reference was submitted twice"
    for row in rows:
        assert row["status"] in ("running", "done", "submit_failed"), row
        assert (row["status"] == "submit_failed") == (row["reference"] not in references), row


@pytest.mark.emulator(create_then_fail_fraction=1.0, rate_limit_post_per_second=0)
def test_a_5xx_answered_after_the_job_was_created_does_not_create_a_second_one(stack: Stack) -> None:
    result = stack.client()
    assert result.returncode == 0, result.stderr
    [created] = created_jobs(stack)
    assert stack.emulator.stats()["injected_create_then_fail"] == 1
    [job] = listed(stack)
    assert (job["job_id"], job["status"]) == (created["id"], "running")
