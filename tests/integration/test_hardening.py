"""Hardening, each as the user meets it: a rejection's real reason, log lines nobody can forge, per-job
credentials, the API's default wait, a cronjob that stops cleanly, and a first run that explains itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest
import requests

from cronjob import run_pass
from notification_flow.api import SpeechmaticsAPI
from notification_flow.reconcile import ReconcilePolicy, Reconciler
from notification_flow.transcripts import TranscriptFiles
from tests import RUNTIME_PYTHON
from tests.integration.support import (
    API_KEY,
    ROOT,
    SECRET,
    Stack,
    create_job,
    free_port,
    submit_like_client,
    token_for,
    wait_for,
)

PRODUCTION = "https://asr.api.speechmatics.com/v2"


# -- 1. a rejected job's reason is Speechmatics' own, not the failed delivery appended after it -------------
@pytest.mark.emulator(reject_data_names=("reject-*",))
def test_cronjob_records_the_real_reason_of_a_rejection_whose_notification_failed(stack: Stack) -> None:
    store = stack.store()
    reference = uuid.uuid4().hex
    store.add_submission(reference, "reject-me.wav")
    job_id = create_job(stack, reference, {"contents": ["transcript"]}, data_name="reject-me.wav")  # no server
    store.record_created(reference, job_id)
    errors = wait_for(lambda: [e["message"] for e in stack.emulator.job(job_id).get("errors", [])
                               if e["message"] == "Sending notification failed"] and
                      stack.emulator.job(job_id)["errors"], message="every delivery to fail")
    assert stack.emulator.job(job_id)["status"] == "rejected" and len(errors) > 1
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stderr
    job = store.find(job_id)
    assert job.status == "rejected" and job.error == errors[0]["message"], (job, errors)
    assert "notification" not in job.error.lower()


# -- 2. request input never forges a log line ---------------------------------------------------------------
FORGED = "2026-01-01 00:00:00,000 INFO server forged"


@pytest.mark.parametrize("valid_token", [False, True])
def test_hostile_ids_statuses_paths_and_headers_forge_no_log_line(served: Stack, valid_token: bool) -> None:
    _, job_id = submit_like_client(served)
    auth = token_for(served, job_id) if valid_token else {"Authorization": "Bearer v1.not-ours.x"}
    hostile = [f"x\n{FORGED}", f"x\r\n{FORGED}", f"\x1b[31m{FORGED}\x1b[0m", f"x\u2028{FORGED}", f"{job_id}\n{FORGED}"]
    for value in hostile:
        for params in ({"id": value, "status": "success"}, {"id": job_id, "status": value}):
            requests.post(served.webhook_url, params=params, headers=auth, timeout=10)
        requests.post(served.webhook_url + "%0a" + FORGED.replace(" ", "%20"), headers=auth, timeout=10)
        if "\n" not in value and "\r" not in value:  # HTTP cannot carry those; gunicorn refuses other controls
            requests.post(served.webhook_url, params={"id": job_id, "status": "success"}, timeout=10,
                          headers={**auth, "X-Forwarded-For": value.encode(), "User-Agent": value.encode()})
    wait_for(lambda: served.server_log().count("notification job=") >= 2 * len(hostile), message="log lines")
    log = served.server_log()
    assert "\x1b" not in log and "\u2028" not in log
    assert not [line for line in log.splitlines() if line.startswith(FORGED) or FORGED in line.split(" job=")[0]]
    assert "\\x1b[31m" in log  # escaped, not dropped: the log still shows what came


# -- 4. the API's default wait never slows a pass -------------------------------------------------------
@pytest.mark.emulator(processing_seconds=600, default_wait_seconds=2.0, rate_limit_post_per_second=0)
def test_a_pass_asking_for_twenty_running_jobs_one_by_one_is_not_slowed_by_the_default_wait(stack: Stack) -> None:
    job_ids = [submit_like_client(stack, {"contents": ["transcript"]})[1] for _ in range(20)]
    before = stack.emulator.stats()["requests"]
    policy = ReconcilePolicy(grace_seconds=0, batch=1, concurrency=1)  # one job per batch: no listing
    started = time.monotonic()
    with SpeechmaticsAPI(API_KEY, stack.emulator.url, timeout=30) as api:
        summary = run_pass(Reconciler(stack.store(), api, TranscriptFiles(stack.transcripts), policy))
    elapsed = time.monotonic() - started
    after = stack.emulator.stats()["requests"]
    assert summary["still running"] == 20
    assert sum(after.values()) - sum(before.values()) >= 20  # each job asked for on its own
    assert elapsed < 10, f"{elapsed:.1f}s: the default 2 s wait would take 40 s"
    assert {stack.store().find(j).status for j in job_ids} == {"running"}


# -- 5. cronjob.py --loop stops cleanly -----------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.emulator(processing_seconds=600, rate_limit_post_per_second=0)
def test_cronjob_loop_stops_on_a_signal_with_exit_0_and_releases_its_leases(stack: Stack, sig: int) -> None:
    for _ in range(20):
        submit_like_client(stack, {"contents": ["transcript"]})
    stack.emulator.set_faults(api_latency_ms=1500)  # the signal arrives while the pass holds its leases
    loop = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--all", "--loop", "60"], cwd=stack.tmp,
                            env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: leased(stack) > 0, timeout=30, message="the pass to lease its jobs")
        loop.send_signal(sig)
        started = time.monotonic()
        out, err = loop.communicate(timeout=15)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0, (loop.returncode, out, err)
    assert time.monotonic() - started < 10
    assert leased(stack) == 0
    stack.emulator.set_faults(api_latency_ms=0)
    second = stack.cronjob("--all")
    assert second.returncode == 0 and "checked 20," in second.stdout, second.stdout + second.stderr


def leased(stack: Stack) -> int:
    with stack.store().database.transaction(write=False) as tx:
        return tx.execute("SELECT COUNT(*) AS n FROM jobs WHERE lease_until IS NOT NULL")[0]["n"]


# -- 7., 8., 9. a first run that explains itself --------------------------------------------------------
def test_list_without_a_database_says_so_and_creates_none(stack: Stack) -> None:
    if not stack.database_url.startswith("sqlite"):
        pytest.skip("a missing file is sqlite's case; PostgreSQL's is an empty schema, below")
    result = stack.client("--list")
    assert result.returncode == 2 and not (stack.tmp / "jobs.db").exists()
    [line] = result.stderr.strip().splitlines()
    assert "no job database" in line and str(stack.tmp / "jobs.db") in line


def test_list_in_an_empty_postgresql_schema_creates_no_tables(stack: Stack) -> None:
    if stack.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    result = stack.client("--list")
    assert result.returncode == 2 and "no job database" in result.stderr
    import psycopg

    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT to_regclass('jobs')").fetchone()[0] is None


@pytest.mark.parametrize("args", [["--json"], ["--list", "a.wav"]])
def test_flags_that_only_make_sense_together_are_checked(stack: Stack, args: list[str]) -> None:
    result = stack.client(*args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and stack.emulator.stats()["requests"] == {}
    assert not (stack.tmp / "jobs.db").exists()


@pytest.mark.parametrize("webhook", ["http://localhost:8080/webhook", "http://127.0.0.1/webhook",
                                     "https://192.168.1.20/webhook", "http://[::1]:8080/webhook",
                                     "http://169.254.1.1/webhook", "http://10.0.0.5/webhook"])
def test_a_private_webhook_url_with_the_production_api_is_refused_before_any_call(stack: Stack, webhook: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # any attempt to call out fails here
    started = time.monotonic()
    result = stack.client(SPEECHMATICS_BATCH_URL=PRODUCTION, WEBHOOK_URL=webhook, HTTPS_PROXY=closed,
                          HTTP_PROXY=closed, https_proxy=closed, http_proxy=closed)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "WEBHOOK_URL" in line and "never reach" in line and "ALLOW_PRIVATE_WEBHOOK_URL" in line
    assert time.monotonic() - started < 15
    assert not (stack.tmp / "jobs.db").exists()


def test_empty_audio_is_refused_before_anything_is_recorded(stack: Stack) -> None:
    empty = stack.tmp / "empty.wav"
    empty.write_bytes(b"")
    result = stack.client(str(empty))
    assert result.returncode == 1 and "empty.wav: the file is empty" in result.stderr
    assert stack.store().jobs() == [] and stack.emulator.stats()["requests"].get("POST /v2/jobs", 0) == 0


@pytest.mark.parametrize("script, args", [("server.py", ["--port", "99999"]), ("server.py", ["--workers", "0"]),
                                          ("server.py", ["--threads", "-1"]), ("cronjob.py", ["--grace", "-5"]),
                                          ("cronjob.py", ["--loop", "0"]), ("cronjob.py", ["--concurrency", "0"])])
def test_bad_numbers_on_the_command_line_are_one_line_and_exit_2(stack: Stack, script: str, args: list[str]) -> None:
    result = stack.run(script, *args, timeout=30)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and args[0] in line and "Traceback" not in result.stderr


def test_server_honours_gunicorn_cmd_args(stack: Stack) -> None:
    stack.start_server(workers=1, GUNICORN_CMD_ARGS="--access-logfile - --access-logformat 'ACCESS %(s)s'")
    wait_for(lambda: "ACCESS 200" in stack.server_log(), message="gunicorn's access log, asked for in the env")


# -- 6., 10. settings -----------------------------------------------------------------------------------------
def test_a_postgresql_connection_error_names_host_port_and_database_not_the_password(stack: Stack) -> None:
    port = free_port()
    result = stack.cronjob(DATABASE_URL=f"postgresql://someone:hunter2secret@127.0.0.1:{port}/jobs_here")
    assert result.returncode == 75  # down, not a bad setting: try again
    [line] = result.stderr.strip().splitlines()
    assert "127.0.0.1" in line and str(port) in line and "jobs_here" in line and "DATABASE_URL" in line
    assert "hunter2secret" not in result.stderr


def test_the_secret_never_travels_with_a_job(stack: Stack) -> None:
    stack.start_server()
    assert stack.client().returncode == 0
    [job] = stack.store().jobs()
    config = stack.emulator.job(job.job_id)["config"]
    [header] = config["notification_config"][0]["auth_headers"]
    assert header.startswith(f"Authorization: Bearer v1.{job.reference}.") and SECRET not in str(config)
    wait_for(lambda: stack.store().find(job.job_id).status == "done", message="the notification")


def test_a_token_of_one_job_is_refused_for_another_over_the_wire(served: Stack) -> None:
    _, first = submit_like_client(served)
    _, second = submit_like_client(served)
    body = served.emulator.transcript_bytes(second) if served.emulator.job(second)["status"] == "done" else b""
    response = requests.post(served.webhook_url, params={"id": second, "status": "success"}, data=body,
                             headers={**token_for(served, first), "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 403
    assert not (served.transcripts / f"{second}.json").exists() and os.path.isdir(served.transcripts)
