"""TRANSCRIPTS_URL: the whole flow with transcripts in a real S3-compatible store (SeaweedFS), on both databases.

Two servers and the cronjob share one bucket and no directory: the webhook path, a notification that arrives
before the job is recorded, concurrent duplicates to both servers (one object, every other write refused), a
lost notification recovered by the cronjob, the store stopped (503, and /readyz says so) and back; and every
store that cannot work refused at start-up with one line and exit 2.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from seaweed import SECRET_KEY, SeaweedFS
from tests import RUNTIME_PYTHON
from tests.integration.support import (
    ROOT,
    SECRET,
    Stack,
    free_port,
    json_lines,
    script_env,
    submit_like_client,
    wait_for,
)


def bucket_and_prefix(stack: Stack) -> tuple[str, str]:
    bucket, _, prefix = stack.storage["TRANSCRIPTS_URL"].removeprefix("s3://").partition("/")
    return bucket, prefix


def stored_objects(stack: Stack, seaweedfs: SeaweedFS) -> dict[str, bytes]:
    """Every object in the stack's bucket, by key."""
    bucket, _ = bucket_and_prefix(stack)
    client = seaweedfs.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents") or []
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def object_of(stack: Stack, seaweedfs: SeaweedFS, job_id: str) -> bytes | None:
    return stored_objects(stack, seaweedfs).get(f"{bucket_and_prefix(stack)[1]}/{job_id}.json")


def wait_until_done(stack: Stack, job_id: str) -> None:
    wait_for(lambda: (job := stack.store().find(job_id)) is not None and job.status == "done",
             message=f"job {job_id} to be done")


def second_server(stack: Stack) -> Stack:
    """Another server.py on its own port and directory, on the same database and bucket."""
    other = Stack(tmp=stack.tmp / "second", emulator=stack.emulator, database_url=stack.database_url,
                  storage=stack.storage)
    other.tmp.mkdir()
    other.start_server()
    return other


def finished_without_notification(stack: Stack) -> str:
    stack.emulator.set_faults(drop_fraction=1.0)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    stack.emulator.set_faults(drop_fraction=0.0)
    return job_id


def test_webhook_early_duplicate_and_lost_notifications_on_s3(s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    stack = s3_stack
    stack.start_server()
    other = second_server(stack)
    try:
        # the webhook path: client.py, the notification, the object, and --list showing its s3:// URL
        assert stack.client().returncode == 0
        job_id = json_lines(stack.client("--list", "--json").stdout)[0]["job_id"]
        wait_until_done(stack, job_id)
        assert object_of(stack, seaweedfs, job_id) == stack.emulator.transcript_bytes(job_id)
        location = f"{stack.storage['TRANSCRIPTS_URL']}/{job_id}.json"
        assert json_lines(stack.client("--list", "--json").stdout)[0]["transcript"] == location
        assert location in stack.client("--list").stdout

        # concurrent duplicates to both servers: one object, one write; every other write refused (412)
        duplicated = finished_without_notification(stack)
        body = stack.emulator.transcript_bytes(duplicated)
        barrier, codes = threading.Barrier(8), []

        def deliver(server: Stack) -> None:
            barrier.wait()
            codes.append(server.notify(duplicated, body=body, content_type="application/json").status_code)

        threads = [threading.Thread(target=deliver, args=(server,)) for server in [stack, other] * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [200] * 8
        assert object_of(stack, seaweedfs, duplicated) == body
        logs = stack.server_log() + other.server_log()
        assert logs.count(f"stored={duplicated}.json") == 1, logs
        assert sum(f"job={duplicated}" in line and "outcome=done" in line for line in logs.splitlines()) == 1

        # a notification that arrives before the job id is recorded is joined by its reference
        stack.emulator.set_faults(hold_notifications=True)
        reference, early = submit_like_client(stack, {"contents": ["transcript"]}, record=False)
        held = wait_for(lambda: [h for h in stack.emulator.held() if h["job_id"] == early], message="notification")
        assert stack.emulator.deliver(held[0]["key"])["outcome"] == 200
        assert stack.store().find_by_reference(reference).status == "done"
        assert object_of(stack, seaweedfs, early) == stack.emulator.transcript_bytes(early)
        stack.emulator.set_faults(hold_notifications=False)

        # a lost notification: the cronjob fetches the transcript into the bucket
        lost = finished_without_notification(stack)
        result = stack.cronjob("--all")
        assert result.returncode == 0 and "recovered 1" in result.stdout, result.stdout + result.stderr
        assert stack.store().find(lost).transcript == f"{stack.storage['TRANSCRIPTS_URL']}/{lost}.json"
        assert object_of(stack, seaweedfs, lost) == stack.emulator.transcript_bytes(lost)

        # and a repair finds a deleted object by HEAD, and fetches it again
        bucket, prefix = bucket_and_prefix(stack)
        seaweedfs.client().delete_object(Bucket=bucket, Key=f"{prefix}/{lost}.json")
        assert stack.cronjob("--all").returncode == 0
        assert object_of(stack, seaweedfs, lost) == stack.emulator.transcript_bytes(lost)
        expected = {f"{prefix}/{name}.json" for name in (job_id, duplicated, early, lost)}
        assert set(stored_objects(stack, seaweedfs)) == expected
        assert SECRET_KEY not in logs + result.stderr
    finally:
        other.stop_server()


def test_store_stopped_is_answered_503_and_recovered_when_it_returns(s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    """The worker's SeaweedFS itself is stopped (SIGKILL) and started again on its ports and data."""
    stack = s3_stack
    bucket, prefix = bucket_and_prefix(stack)
    stack.start_server()
    job_id = finished_without_notification(stack)
    body = stack.emulator.transcript_bytes(job_id)
    ready = f"http://127.0.0.1:{stack.server_port}/readyz"

    seaweedfs.stop()
    try:
        assert stack.notify(job_id, body=body, content_type="application/json").status_code == 503
        assert requests.get(ready, timeout=30).status_code == 503
        assert stack.store().find(job_id).status == "running"
        cronjob = stack.cronjob("--all")  # it checks the store at start-up: unavailable is exit 75, one line
        assert cronjob.returncode == 75 and cronjob.stderr.count("error: ") == 1, cronjob.stderr
    finally:
        seaweedfs.start()
    assert requests.get(ready, timeout=30).status_code == 200
    assert stack.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert stack.store().find(job_id).status == "done"
    assert seaweedfs.client().get_object(Bucket=bucket, Key=f"{prefix}/{job_id}.json")["Body"].read() == body
    log = stack.server_log()
    assert "S3 PutObject: try 3 of 3" in log, log  # boto3's retries, bounded and each logged
    assert " try 4 of " not in log, log  # the first try is one of the three
    assert SECRET_KEY not in log and SECRET not in log


@contextlib.contextmanager
def unconditional_proxy(seaweedfs: SeaweedFS) -> Iterator[str]:
    """A real HTTP proxy on loopback in front of SeaweedFS that drops If-None-Match and signs the request again
    (it knows the credentials): a store that does not honour conditional writes, as some still do not."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from seaweed import ACCESS_KEY, REGION

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # answers botocore's Expect: 100-continue at once

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            keep = {k: v for k, v in self.headers.items() if k.lower() not in (
                "if-none-match", "authorization", "x-amz-date", "host", "x-amz-content-sha256", "content-length",
                "expect")}
            request = AWSRequest(self.command, f"{seaweedfs.endpoint}{self.path}", data=body, headers=keep)
            S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
            answer = requests.request(self.command, request.url, data=body, headers=dict(request.headers), timeout=30)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {"SPEECHMATICS_API_KEY": "key", "SPEECHMATICS_BATCH_URL": "http://127.0.0.1:9/v2",
                "WEBHOOK_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
                "TRANSCRIPTS_DIR": str(tmp_path / "spool")}
    return subprocess.run([RUNTIME_PYTHON, str(ROOT / script), *args], cwd=tmp_path,
                          env=script_env(tmp_path, **{**settings, **env}), capture_output=True, text=True,
                          timeout=60, check=False)


SCRIPTS_CHECKED = {"malformed url": ("server.py",), "missing bucket": ("server.py", "cronjob.py"),
                   "missing credentials": ("cronjob.py",), "wrong credentials": ("server.py",),
                   "no conditional writes": ("server.py", "cronjob.py")}


@pytest.mark.parametrize("case", list(SCRIPTS_CHECKED))
def test_a_store_that_cannot_work_is_refused_at_start_up(tmp_path: Path, seaweedfs: SeaweedFS, case: str) -> None:
    bucket = seaweedfs.new_bucket(f"t-{uuid.uuid4().hex[:24]}")
    env = {"TRANSCRIPTS_URL": f"s3://{bucket}/t", **seaweedfs.env()}
    with contextlib.ExitStack() as stop:
        if case == "malformed url":
            env["TRANSCRIPTS_URL"] = "s3://Not_A_Bucket/x"
        elif case == "missing bucket":
            env["TRANSCRIPTS_URL"] = "s3://no-such-bucket-here/t"
        elif case == "missing credentials":
            env = {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        elif case == "wrong credentials":
            env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-0123456789"
        else:
            env["AWS_ENDPOINT_URL"] = stop.enter_context(unconditional_proxy(seaweedfs))
        for script in SCRIPTS_CHECKED[case]:  # one check, which both scripts make: each meets some cases
            result = run(script, tmp_path, *(("--port", str(free_port())) if script == "server.py" else ()), **env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, (script, result.stderr)
            assert len(lines) == 1 and lines[0].startswith("error: TRANSCRIPTS_URL"), lines
            assert SECRET_KEY not in result.stderr and "wrong-secret" not in result.stderr
            assert not (tmp_path / "jobs.db").exists() and not (tmp_path / "spool").exists(), script  # nothing written
    if case == "no conditional writes":
        assert "does not honour conditional writes" in lines[0], lines
    assert (seaweedfs.client().list_objects_v2(Bucket=bucket).get("Contents") or []) == []  # the probe is gone
