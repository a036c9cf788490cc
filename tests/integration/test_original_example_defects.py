"""One regression test per defect of Speechmatics' own notification_flow example, so none comes back."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tests import RUNTIME_PYTHON
from tests.integration.support import (
    ROOT,
    SECRET,
    Stack,
    blackhole,
    created_jobs,
    submit_like_client,
    token_for,
    transcript_files,
    wait_for,
)


def test_defect_1_text_plain_transcript_notification_is_stored_not_refused(served: Stack) -> None:
    """The example asked for transcript.txt, then read request.json: current Flask answers 415."""
    _, job_id = submit_like_client(served, {"contents": ["transcript.txt"]})
    wait_for(lambda: served.store().find(job_id).status == "done", message="the job to be done")
    assert all(d["outcome"] == 200 for d in served.emulator.deliveries() if d["job_id"] == job_id)
    assert (served.transcripts / f"{job_id}.json").read_bytes() == served.emulator.transcript_bytes(job_id)


@pytest.mark.emulator(reject_data_names=("*",))
def test_defect_2_failure_takes_the_job_id_from_the_query_not_the_body(served: Stack) -> None:
    """On failure Speechmatics sends no transcript (here: an empty body); the id is in the query string."""
    _, job_id = submit_like_client(served, {"contents": []})
    wait_for(lambda: served.store().find(job_id).status == "rejected", message="the job to be rejected")


def test_defect_3_job_is_recorded_before_it_is_submitted(stack: Stack) -> None:
    """The example inserted the row after submitting: a fast notification found nothing, a crash lost it."""
    with blackhole(stack.emulator.url) as swallowing_url:
        client = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "client.py")], cwd=stack.tmp,
                                  env=stack.env(SPEECHMATICS_BATCH_URL=swallowing_url))
        try:
            wait_for(lambda: created_jobs(stack), message="the API to create the job")
            [created] = created_jobs(stack)
            row = stack.store().find_by_reference(created["config"]["tracking"]["reference"])
            assert row is not None and row.status == "submitting"
        finally:
            client.kill()
            client.wait(timeout=10)


def test_defect_4_the_unauthenticated_id_never_becomes_a_path(served: Stack) -> None:
    for job_id in ("../../escaped", "..%2fescaped", "/tmp/escaped"):
        response = served.notify(job_id, body=b'{"format": "2.9", "job": {}, "results": []}',
                                 content_type="application/json")
        assert response.status_code == 400
    assert not (served.tmp / "escaped").exists() and list(served.transcripts.glob("*.json")) == []


def test_defect_5_notifications_must_be_authenticated(served: Stack) -> None:
    response = requests.post(served.webhook_url, params={"id": "abcdefghij", "status": "success"},
                             json={"format": "2.9", "job": {"id": "abcdefghij"}, "results": []}, timeout=10)
    assert response.status_code == 401
    assert transcript_files(served.transcripts) == []


def test_defect_6_debug_mode_is_off_and_a_production_server_runs(served: Stack) -> None:
    from notification_flow.settings import load_settings
    from server import create_app

    app = create_app(load_settings(environ={"WEBHOOK_SECRET": SECRET, "DATABASE_URL": served.database_url,
                                          "TRANSCRIPTS_DIR": str(served.transcripts)}))
    assert app.debug is False
    response = requests.get(served.webhook_url.replace("/webhook", "/console"), timeout=5)
    assert response.status_code == 404 and "Debugger" not in response.text
    assert "gunicorn" in served.server_log().lower()


def test_defect_7_cronjob_fetches_the_transcript_of_a_lost_notification(stack: Stack) -> None:
    stack.emulator.set_faults(drop_fraction=1.0)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    assert stack.cronjob("--all").returncode == 0
    assert (stack.transcripts / f"{job_id}.json").read_bytes() == stack.emulator.transcript_bytes(job_id)


def spooling(incoming: Path, group: int) -> bool:
    """Whether a process of the server's group holds a file open in .incoming: a body being received, in a
    file that has no name there (O_TMPFILE) or a `.part` one."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.getpgid(int(pid)) == group and any(
                    os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{incoming}{os.sep}")
                    for fd in os.listdir(f"/proc/{pid}/fd")):
                return True
    return False


def test_defect_8_a_killed_server_leaves_no_torn_transcript_and_sqlite_uses_wal(stack: Stack) -> None:
    stack.start_server(workers=1)
    stack.emulator.set_faults(drop_fraction=1.0)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    body = stack.emulator.transcript_bytes(job_id)
    half_sent = threading.Event()

    def slow_body():
        yield body[: len(body) // 2]
        half_sent.set()
        threading.Event().wait(30)  # the server is killed while waiting for the rest
        yield body[len(body) // 2:]

    def send() -> None:
        with contextlib.suppress(requests.RequestException):  # the server dies mid-request
            requests.post(stack.webhook_url, params={"id": job_id, "status": "success"}, data=slow_body(),
                          headers={**token_for(stack, job_id), "Content-Type": "application/json"},
                          timeout=60)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    half_sent.wait(10)
    wait_for(lambda: spooling(stack.transcripts / ".incoming", stack.server.pid), message="the body to be streaming")
    stack.stop_server(signal.SIGKILL)
    assert transcript_files(stack.transcripts) == []
    assert stack.store().find(job_id).status == "running"
    stack.start_server(workers=1)
    assert stack.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert (stack.transcripts / f"{job_id}.json").read_bytes() == body
    if stack.database_url.startswith("sqlite"):
        conn = sqlite3.connect(stack.database_url[len("sqlite:///"):])
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
