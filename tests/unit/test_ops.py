"""/healthz, /readyz and /metrics in-process: what each answers, the token, and that every metric the alerts
use moves with what happened (notifications, writes, open jobs, the reconciler's pass, API calls)."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import flask.testing
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import server
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import ReconcileOutcome, State
from notification_flow.logs import JsonFormatter, gunicorn_logconfig
from notification_flow.metrics import RETENTION_SECONDS, database_facts
from notification_flow.passes import record_pass
from tests.unit.test_server_app import JOB_ID, REFERENCE, make_settings, notify, transcript_bytes

TOKEN = "metrics-token-0123456789"


def samples(client: flask.testing.FlaskClient, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Every sample of /metrics as {'name{label="v"}': value}."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


@pytest.fixture
def app_client(tmp_path: Path, store: JobStore) -> flask.testing.FlaskClient:
    return server.create_app(make_settings(tmp_path)).test_client()


@pytest.fixture
def store(fresh_store: JobStore) -> JobStore:
    fresh_store.add_submission(REFERENCE, "a.wav")
    fresh_store.record_created(REFERENCE, JOB_ID)
    return fresh_store


def test_readyz_answers_200_when_database_and_storage_work(app_client: flask.testing.FlaskClient) -> None:
    response = app_client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"outcome": "ok"}


def test_readyz_is_503_when_transcript_storage_is_gone(tmp_path: Path, store: JobStore) -> None:
    client = server.create_app(make_settings(tmp_path)).test_client()
    shutil.rmtree(tmp_path / "transcripts")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"outcome": "transcript storage not writable"}
    assert client.get("/healthz").status_code == 200


def test_metrics_count_notifications_writes_and_open_jobs(app_client: flask.testing.FlaskClient) -> None:
    before = samples(app_client)
    assert before['transcribe_jobs{state="running"}'] == 1
    assert before["transcribe_transcripts_written_total"] == 0
    assert notify(app_client, body=transcript_bytes()).status_code == 200
    assert notify(app_client, body=transcript_bytes()).status_code == 200  # a duplicate writes nothing
    assert notify(app_client, headers={}).status_code == 401
    after = samples(app_client)
    assert after['transcribe_notifications_total{code="200",outcome="done"}'] == 1
    assert after['transcribe_notifications_total{code="200",outcome="duplicate"}'] == 1
    assert after['transcribe_notifications_total{code="401",outcome="unauthenticated"}'] == 1
    assert after["transcribe_notification_handling_seconds_count"] == 3
    assert after["transcribe_transcripts_written_total"] == 1
    assert after['transcribe_jobs{state="running"}'] == 0
    assert after["transcribe_oldest_unfinished_job_age_seconds"] == 0
    assert "transcribe_oldest_unfetched_job_expires_in_seconds" not in after
    assert after["transcribe_database_up"] == 1


def test_metrics_show_expiry_and_age_of_the_oldest_running_job(app_client: flask.testing.FlaskClient) -> None:
    found = samples(app_client)
    assert 0 <= found["transcribe_oldest_unfinished_job_age_seconds"] < 60
    assert RETENTION_SECONDS - 60 < found["transcribe_oldest_unfetched_job_expires_in_seconds"] <= RETENTION_SECONDS


def test_metrics_show_the_reconcilers_last_pass(app_client: flask.testing.FlaskClient, store: JobStore) -> None:
    assert "transcribe_reconciler_last_pass_end_timestamp_seconds" not in samples(app_client)
    summary = Counter({"checked": 3, ReconcileOutcome.RECOVERED: 1, ReconcileOutcome.REPAIRED: 1,
                       ReconcileOutcome.FAILED: 1})
    record_pass(store, summary, duration=2.5)
    record_pass(store, summary, duration=2.5)  # overwritten, never accumulated
    found = samples(app_client)
    assert abs(found["transcribe_reconciler_last_pass_end_timestamp_seconds"] - store.now()) < 60
    assert found['transcribe_reconciler_last_pass_jobs{result="checked"}'] == 3
    assert found['transcribe_reconciler_last_pass_jobs{result="recovered"}'] == 1
    assert found['transcribe_reconciler_last_pass_jobs{result="repaired"}'] == 1  # repairs counted apart
    assert found["transcribe_reconciler_last_pass_complete"] == 1
    assert found['transcribe_reconciler_last_pass_jobs{result="failed"}'] == 1
    assert found["transcribe_reconciler_last_pass_duration_seconds"] == 2.5


def test_metrics_need_the_token_when_one_is_set(tmp_path: Path, store: JobStore) -> None:
    client = server.create_app(make_settings(tmp_path, METRICS_TOKEN=TOKEN)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert "transcribe_database_up" in samples(client, {"Authorization": f"Bearer {TOKEN}"})


def test_metrics_say_when_the_database_is_away(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'jobs.db'}")
    found = samples(server.create_app(settings).test_client())
    assert found["transcribe_database_up"] == 0
    assert "transcribe_jobs" not in "".join(found)


def test_servers_api_calls_are_counted_by_endpoint_and_answer(tmp_path: Path, store: JobStore) -> None:
    """A success notification without a transcript makes the server fetch it: one call, counted."""
    app = server.create_app(make_settings(tmp_path, SPEECHMATICS_API_KEY="key", SPEECHMATICS_BATCH_URL=
                                          "http://127.0.0.1:9/v2"))
    api = app.view_functions["notification"].__self__.api  # type: ignore[attr-defined]  # Receiver.receive's
    api.http._transport = httpx.MockTransport(lambda request: httpx.Response(503))
    client = app.test_client()
    assert notify(client, body=b"").status_code == 503
    found = samples(client)
    assert found['transcribe_api_calls_total{answer="5xx",endpoint="GET /jobs/{id}/transcript"}'] == 1


def test_an_api_call_that_got_no_answer_is_counted_as_none(tmp_path: Path, store: JobStore) -> None:
    """Nothing listens on the API's port: the fetch fails unanswered, counted `none`, and Speechmatics retries."""
    app = server.create_app(make_settings(tmp_path, SPEECHMATICS_API_KEY="key", SPEECHMATICS_BATCH_URL=
                                          "http://127.0.0.1:9/v2"))
    client = app.test_client()
    assert notify(client, body=b"").status_code == 503
    assert samples(client)['transcribe_api_calls_total{answer="none",endpoint="GET /jobs/{id}/transcript"}'] == 1


def test_facts_count_only_open_jobs(store: JobStore) -> None:
    store.add_submission("other-reference", "b.wav")
    facts = database_facts(store)
    assert facts["open"] == {State.SUBMITTING.value: 1, State.RUNNING.value: 1}
    assert facts["submit_failed"] == 0
    store.record_not_created("other-reference", "refused")
    assert database_facts(store)["submit_failed"] == 1
    assert facts["pass"] is None


def test_json_log_lines_carry_fields_and_escape_input() -> None:
    record = logging.LogRecord("server", logging.INFO, __file__, 1, "notification job=%s", ("a\nb",), None)
    record.fields = {"job_id": "a\nb\"\x85\u2028\x9b", "code": 200}
    line = JsonFormatter().format(record)
    assert line.isascii() and len(line.splitlines()) == 1
    parsed = json.loads(line)
    assert parsed["job_id"] == "a\nb\"\x85\u2028\x9b" and parsed["code"] == 200 and parsed["level"] == "info"


def test_gunicorn_logconfig_uses_the_json_formatter_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert gunicorn_logconfig()["formatters"]["main"] == {"()": "notification_flow.logs.JsonFormatter"}
    monkeypatch.setenv("LOG_FORMAT", "text")
    text = gunicorn_logconfig()["formatters"]["main"]  # the text format escapes request input, gunicorn's too
    assert text == {"()": "notification_flow.logs.EscapingFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s "
                    "%(message)s"}



def test_a_scripts_error_line_is_json_when_the_logs_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from notification_flow.logs import error_line

    monkeypatch.setenv("LOG_FORMAT", "text")
    assert error_line("DATABASE_URL is bad") == "error: DATABASE_URL is bad"
    monkeypatch.setenv("LOG_FORMAT", "json")
    entry = json.loads(error_line("DATABASE_URL is bad\nsecond"))
    assert (entry["level"], entry["message"]) == ("error", "DATABASE_URL is bad\nsecond")
