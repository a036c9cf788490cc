"""The operational surface of the real processes: /metrics summed over gunicorn's workers, the reconciler's pass
seen through the server, /readyz, and every line server.py and cronjob.py write as JSON with LOG_FORMAT=json."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support import Stack, submit_like_client, wait_for


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
