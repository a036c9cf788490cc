"""Nothing hides behind "done": a paid add-on that failed, and the notifications Speechmatics could not deliver,
show in --list and count in /metrics."""

from __future__ import annotations

import json

import pytest
import requests

from tests.integration.support import Stack, json_lines, wait_for


def scrape(stack: Stack) -> str:
    return requests.get(f"http://127.0.0.1:{stack.server_port}/metrics", timeout=5).text


def listed_done(stack: Stack) -> dict:
    def done() -> dict | None:
        jobs = json_lines(stack.client("--list", "--json").stdout)
        return jobs[0] if jobs and jobs[0]["status"] == "done" else None
    return wait_for(done, timeout=60, message="the job to be done")


@pytest.mark.emulator(addon_error_fraction=1.0)
def test_a_done_job_whose_translation_failed_shows_a_warning_and_a_metric(served: Stack) -> None:
    config = served.tmp / "translate.json"
    config.write_text(json.dumps({"translation_config": {"target_languages": ["de"]}}))
    assert served.client("--config-file", str(config)).returncode == 0
    job = wait_for(lambda: (j := listed_done(served))["notice"] and j, message="the notice")
    assert job["notice"] == "add-on failed: translation"
    assert "! add-on failed: translation" in served.client("--list").stdout
    assert 'jobs_with_notice_last_day{kind="addon"} 1.0' in scrape(served)


def test_notifications_speechmatics_could_not_deliver_show_after_cronjob_reconciles(stack: Stack) -> None:
    assert stack.client().returncode == 0  # no server: every attempt is refused
    [job] = json_lines(stack.client("--list", "--json").stdout)
    wait_for(lambda: any(e["message"] == "Sending notification failed"
                         for e in stack.emulator.job(job["job_id"]).get("errors", [])), message="the last attempt")
    assert stack.cronjob("--all").returncode == 0
    job = listed_done(stack)
    assert job["notice"].startswith("notification failed (4 attempts at Speechmatics)")
    assert "connection refused" in job["notice"] and "status=" not in job["notice"]
    assert "! notification failed" in stack.client("--list").stdout
    stack.start_server()
    assert 'jobs_with_notice_last_day{kind="notification"} 1.0' in scrape(stack)


@pytest.mark.emulator(addon_error_fraction=1.0)
def test_a_failed_add_on_shows_with_transcripts_in_s3_too(s3_stack: Stack) -> None:
    config = s3_stack.tmp / "translate.json"
    config.write_text(json.dumps({"translation_config": {"target_languages": ["de"]}}))
    s3_stack.start_server()
    assert s3_stack.client("--config-file", str(config)).returncode == 0
    job = wait_for(lambda: (j := listed_done(s3_stack))["notice"] and j, message="the notice")
    assert job["transcript"].startswith("s3://") and job["notice"] == "add-on failed: translation"


def recovered_by_cronjob_with_a_failed_add_on(stack: Stack) -> dict:
    config = stack.tmp / "translate.json"
    config.write_text(json.dumps({"translation_config": {"target_languages": ["de"]}}))
    assert stack.client("--config-file", str(config)).returncode == 0  # no server: the notification is lost
    [job] = json_lines(stack.client("--list", "--json").stdout)
    wait_for(lambda: stack.emulator.job(job["job_id"])["status"] == "done", message="the job done at the API")
    assert stack.cronjob("--all").returncode == 0
    return listed_done(stack)


@pytest.mark.emulator(addon_error_fraction=1.0)
def test_a_failed_add_on_of_a_job_recovered_by_cronjob_shows(stack: Stack) -> None:
    assert recovered_by_cronjob_with_a_failed_add_on(stack)["notice"] == "add-on failed: translation"


@pytest.mark.emulator(addon_error_fraction=1.0)
def test_a_failed_add_on_of_a_job_recovered_by_cronjob_into_s3_shows(s3_stack: Stack) -> None:
    assert recovered_by_cronjob_with_a_failed_add_on(s3_stack)["notice"] == "add-on failed: translation"
