"""The operational surface of the real processes: /metrics summed over gunicorn's workers, the reconciler's pass
seen through the server, /readyz, and every line server.py and cronjob.py write as JSON with LOG_FORMAT=json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT, Stack, running, submit_like_client, wait_for


def scrape(stack: Stack, **headers: str) -> dict[str, float]:
    response = requests.get(f"http://127.0.0.1:{stack.server_port}/metrics", headers=headers, timeout=5)
    response.raise_for_status()
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def transcribed(stack: Stack, job_id: str) -> bytes | None:
    try:
        return stack.emulator.transcript_bytes(job_id)
    except KeyError:
        return None


def test_metrics_add_up_every_workers_notifications(stack: Stack) -> None:
    """Four workers answer twelve notifications between them; one scrape, whichever worker takes it, sees 12."""
    stack.start_server(workers=4)
    for _ in range(12):
        assert stack.notify("0123456789", secret="wrong-secret-0123456789").status_code == 401
    for _ in range(3):  # every scrape, whichever worker answers it
        found = scrape(stack)
        assert found['transcribe_notifications_total{code="401",outcome="unauthenticated"}'] == 12
        assert found["transcribe_notification_handling_seconds_count"] == 12


def test_the_servers_metrics_show_cronjobs_pass_and_recovered_jobs(stack: Stack) -> None:
    stack.start_server(workers=2)
    _, job_id = submit_like_client(stack)  # no notification asked for: only cronjob.py can finish it
    wait_for(lambda: transcribed(stack, job_id), message="the emulator to finish the job")
    assert scrape(stack)['transcribe_jobs{state="running"}'] == 1
    assert "transcribe_reconciler_last_pass_end_timestamp_seconds" not in scrape(stack)
    assert stack.cronjob("--all").returncode == 0
    assert stack.store().find(job_id).status == "done"
    found = scrape(stack)
    assert found['transcribe_jobs{state="running"}'] == 0
    assert found['transcribe_reconciler_last_pass_jobs{result="checked"}'] >= 1
    assert found["transcribe_reconciler_last_pass_end_timestamp_seconds"] > 0


def test_the_metrics_directory_is_removed_when_the_server_stops(stack: Stack) -> None:
    stack.start_server(workers=2)
    stack.notify("0123456789", secret="wrong-secret-0123456789")
    made = [line for line in stack.server_log().splitlines() if "metrics directory" in line]
    assert made, stack.server_log()
    path = Path(made[0].rsplit(" ", 1)[-1])
    assert any(path.glob("*.db"))
    stack.stop_server()
    assert not path.exists()


def test_every_line_is_json_with_log_format_json(stack: Stack) -> None:
    stack.start_server(workers=2, LOG_FORMAT="json")
    reference, job_id = submit_like_client(stack)
    body = wait_for(lambda: transcribed(stack, job_id), message="the emulator to finish the job")
    assert stack.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert stack.notify("0123456789", secret="not-the-secret-0123456789").status_code == 401
    stack.stop_server()
    lines = [json.loads(line) for line in stack.server_log().splitlines()]  # every line parses
    assert any(line["logger"].startswith("gunicorn") for line in lines)  # gunicorn's own lines too
    notification = next(line for line in lines if line.get("job_id") == job_id)
    assert notification["status"] == "success" and notification["outcome"] == "done"
    assert notification["code"] == 200 and notification["duration_seconds"] >= 0
    assert notification["remote_addr"] == "127.0.0.1" and notification["reference"] == reference
    text = stack.server_log()
    assert "not-the-secret" not in text and "test-webhook-secret" not in text
    assert '"results"' not in text  # no transcript text

    _, lost = submit_like_client(stack)
    wait_for(lambda: transcribed(stack, lost), message="the emulator to finish the job")
    result = stack.cronjob("--all", LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    stderr = [json.loads(line) for line in result.stderr.splitlines()]
    stdout = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["job_id"] for line in stderr if line.get("outcome") == "recovered"] == [lost]
    assert stdout[-1]["checked"] == 1 and stdout[-1]["recovered"] == 1 and stdout[-1]["failed"] == 0


sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def readyz(stack: Stack) -> int:
    return requests.get(f"http://127.0.0.1:{stack.server_port}/readyz", timeout=5).status_code


@sqlite_only
def test_json_log_lines_stay_one_line_whatever_the_job_id_carries(stack: Stack) -> None:
    """C1 controls, NEL and the Unicode line and paragraph separators are line ends to `str.splitlines()`."""
    stack.start_server(workers=1, LOG_FORMAT="json")
    for job_id in ("ab\x85cd", "ab\u2028cd\u2029ef", "ab\x9b31mred\x1c", "ab\x0bcd\x0c"):
        assert stack.notify(job_id, secret=None).status_code in (400, 401)
    stack.stop_server()
    written = (stack.tmp / "server.log").read_bytes()
    lines = written.decode().splitlines()
    assert len(lines) == written.count(b"\n"), lines
    entries = [json.loads(line) for line in lines]
    assert {entry["job_id"] for entry in entries if "job_id" in entry} >= {"ab\x85cd", "ab\u2028cd\u2029ef"}


@sqlite_only
def test_readyz_is_503_when_the_transcripts_directory_takes_no_new_file(stack: Stack) -> None:
    """An immutable TRANSCRIPTS_DIR (its .incoming still writable): every notification would get 503, so
    /readyz says so too."""
    stack.start_server(workers=1)
    reference, job_id = submit_like_client(stack)
    body = wait_for(lambda: transcribed(stack, job_id), message="the emulator to finish the job")
    subprocess.run(["chattr", "+i", str(stack.transcripts)], check=True)
    try:
        (stack.transcripts / ".incoming" / "still-writable").write_bytes(b"")
        notified = stack.notify(job_id, body=body, content_type="application/json", reference=reference)
        assert notified.status_code == 503
        assert readyz(stack) == 503
    finally:
        subprocess.run(["chattr", "-i", str(stack.transcripts)], check=True)
    assert readyz(stack) == 200


@sqlite_only
def test_readyz_is_503_once_the_sqlite_file_is_deleted_under_the_server(stack: Stack) -> None:
    """Notifications would otherwise commit into a file no other process can see: both answer 503."""
    stack.start_server(workers=1)
    reference, job_id = submit_like_client(stack)
    body = wait_for(lambda: transcribed(stack, job_id), message="the emulator to finish the job")
    database = Path(stack.database_url[len("sqlite:///"):])
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        path.unlink(missing_ok=True)
    for _ in range(8):  # whichever of the worker's threads answers
        assert readyz(stack) == 503
    assert stack.notify(job_id, body=body, content_type="application/json", reference=reference).status_code == 503
    assert not database.exists()


def server_process(stack: Stack, **env: str) -> subprocess.Popen[bytes]:
    stderr = (stack.tmp / "server.log").open("ab")
    return subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "server.py"), "--port", str(stack.server_port),
                             "--workers", "2"], env=stack.env(**env), cwd=stack.tmp, stdout=stderr,
                            stderr=stderr, start_new_session=True)


@sqlite_only
@pytest.mark.parametrize("moment", ["at once", "first line", "worker booting", "ready"])
def test_a_stop_at_any_moment_is_clean_and_every_line_is_json(stack: Stack, moment: str) -> None:
    """SIGTERM to the whole process group, as systemd sends it, at any moment from start to ready."""
    process = server_process(stack, LOG_FORMAT="json")
    with running(process):
        if moment == "first line":
            wait_for(lambda: stack.server_log().strip(), message="server.py's first line")
        elif moment == "worker booting":
            wait_for(lambda: "Booting worker" in stack.server_log(), message="a worker booting")
        elif moment == "ready":
            wait_for(lambda: process.poll() is None and readyz_or_none(stack) == 200, message="/readyz")
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=60)
    log = stack.server_log()
    if moment == "at once" and code == -signal.SIGTERM:
        assert log == "", log  # stopped before Python ran a line of ours: nothing started, nothing written
    else:
        assert code == 0, log
    assert "Traceback" not in log and "Exception" not in log, log
    for line in log.splitlines():
        json.loads(line)


def readyz_or_none(stack: Stack) -> int | None:
    try:
        return readyz(stack)
    except requests.RequestException:
        return None


@sqlite_only
def test_two_servers_side_by_side_with_an_unwritable_home_log_no_error(stack: Stack, tmp_path: Path) -> None:
    """gunicorn's control socket is not made in a home shared by every server (and, here, unusable)."""
    home = tmp_path / "home-is-a-file"
    home.write_bytes(b"")
    second = Stack(tmp=tmp_path / "second", emulator=stack.emulator, database_url=stack.database_url)
    second.tmp.mkdir()
    try:
        for each in (stack, second):
            each.start_server(workers=1, HOME=str(home), XDG_RUNTIME_DIR="")
        for each in (stack, second):
            each.stop_server()
    finally:
        second.stop_server()
    for each in (stack, second):
        assert " ERROR " not in each.server_log() and "control socket" not in each.server_log().lower(), \
            each.server_log()
