"""Unit tests of server.create_app through Flask's test client: auth, validation, storing, outcomes, health, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import flask.testing
import pytest

import server
from notification_flow import settings as settings_module
from notification_flow.auth import job_token
from notification_flow.jobs import JobStore, open_store
from notification_flow.lifecycle import State
from notification_flow.settings import Settings, load_settings

SECRET = "unit-test-secret-0123456789"
PREVIOUS = "previous-secret-0123456789"
DOCS_TRANSCRIPT = Path(__file__).parents[1] / "emulator" / "fixtures" / "transcript-json-v2-docs-example.json"
JOB_ID = "650krlru2e"
REFERENCE = "0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {job_token(SECRET, REFERENCE)}"}


def token_header(reference: str, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {job_token(secret, reference)}"}


def transcript_bytes(job_id: str = JOB_ID) -> bytes:
    document = json.loads(DOCS_TRANSCRIPT.read_text())
    document["job"]["id"] = job_id
    return json.dumps(document).encode()


@pytest.fixture(autouse=True)
def no_saved_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never pick up a key from `speechmatics config`: the server must not reach the API in these tests."""
    monkeypatch.setattr(settings_module, "saved_api_key", lambda: None)


def make_settings(tmp_path: Path, **environ: str) -> Settings:
    base = {"WEBHOOK_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "TRANSCRIPTS_DIR": str(tmp_path / "transcripts")}
    return load_settings(environ={**base, **environ})


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    store = open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.add_submission(REFERENCE, "a.wav")
    store.record_created(REFERENCE, JOB_ID)
    return store


@pytest.fixture
def client(tmp_path: Path, store: JobStore) -> flask.testing.FlaskClient:
    return server.create_app(make_settings(tmp_path)).test_client()


def transcripts_dir(tmp_path: Path) -> Path:
    return tmp_path / "transcripts"


def stored_files(tmp_path: Path) -> list[Path]:
    return sorted(path for path in transcripts_dir(tmp_path).rglob("*") if path.is_file())


def notify(client: flask.testing.FlaskClient, job_id: str = JOB_ID, status: str = "success",
           body: bytes | None = None, headers: dict[str, str] | None = None, method: str = "post",
           **kwargs: Any) -> Any:
    request_args: dict[str, Any] = {"query_string": {"id": job_id, "status": status},
                                    "headers": AUTH if headers is None else headers, **kwargs}
    if body is not None:
        request_args.setdefault("content_type", "application/json")
        request_args["data"] = body
    return getattr(client, method)("/webhook", **request_args)


# -- authentication ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": f"Bearer {SECRET[:-1]}"},
                                     {"Authorization": f"Bearer {SECRET}x"}, {"Authorization": SECRET},
                                     {"Authorization": f"bearer {SECRET}"}, {"Authorization": f"Basic {SECRET}"},
                                     {"Authorization": f"Bearer {PREVIOUS}"}, {"Authorization": "Bearer \u00e9"},
                                     {"Authorization": f"Bearer {SECRET}"},  # the shared secret, for a new job
                                     token_header(REFERENCE, PREVIOUS), token_header(REFERENCE, "x" * 20),
                                     {"Authorization": AUTH["Authorization"][:-1]},
                                     {"Authorization": AUTH["Authorization"].replace("v1.", "v2.")},
                                     {"Authorization": AUTH["Authorization"] + ".x"},
                                     {"Authorization": f"Bearer v1.{'f' * 32}.{job_token(SECRET, REFERENCE)[36:]}"},
                                     token_header("f" * 32)])  # correctly signed, for a reference we never made
def test_a_missing_or_wrong_secret_is_401_and_writes_nothing(client: flask.testing.FlaskClient, store: JobStore,
                                                             tmp_path: Path, headers: dict[str, str]) -> None:
    response = notify(client, body=transcript_bytes(), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"outcome": "unauthenticated"}
    assert stored_files(tmp_path) == []
    assert store.find(JOB_ID).status == State.RUNNING


@pytest.mark.parametrize("secret", [SECRET, PREVIOUS])
def test_tokens_of_the_current_and_the_previous_secret_are_accepted(tmp_path: Path, store: JobStore,
                                                                    secret: str) -> None:
    app = server.create_app(make_settings(tmp_path, WEBHOOK_SECRET_PREVIOUS=PREVIOUS))
    response = notify(app.test_client(), body=transcript_bytes(), headers=token_header(REFERENCE, secret))
    assert response.status_code == 200
    assert store.find(JOB_ID).status == State.DONE


def test_a_token_of_one_job_is_refused_for_another_and_writes_nothing(client: flask.testing.FlaskClient,
                                                                      store: JobStore, tmp_path: Path) -> None:
    store.add_submission("b" * 32, "b.wav")
    store.record_created("b" * 32, "otherjob01")
    for status, body in (("success", transcript_bytes("otherjob01")), ("error", b""), ("success", b"")):
        response = notify(client, job_id="otherjob01", status=status, body=body)  # A's token, B's id
        assert response.status_code == 403
        assert response.get_json() == {"outcome": "token of another job"}
    assert stored_files(tmp_path) == []
    assert store.find("otherjob01").status == State.RUNNING and store.find(JOB_ID).status == State.RUNNING


def test_a_token_of_a_row_without_a_job_id_is_503_without_the_api_to_ask(client: flask.testing.FlaskClient,
                                                                          store: JobStore, tmp_path: Path) -> None:
    """Whose job the notification's id is, only the API can say; with no API key the answer is "not now",
    and nothing is written (client.py or cronjob.py records the id, Speechmatics retries)."""
    store.add_submission("c" * 32, "c.wav")  # client.py has not recorded the id yet
    for status, body in (("success", transcript_bytes("joined0001")), ("error", b""), ("success", b"")):
        response = notify(client, job_id="joined0001", status=status, body=body, headers=token_header("c" * 32))
        assert (response.status_code, response.get_json()) == (503, {"outcome": "job id not proven yet"})
    assert stored_files(tmp_path) == []
    job = store.find_by_reference("c" * 32)
    assert (job.job_id, job.status) == (None, State.SUBMITTING)


@pytest.mark.parametrize("remote, code", [("127.0.0.1", 403), ("40.74.41.91", 200)])
def test_allowed_regions_limit_the_sender_address(tmp_path: Path, store: JobStore, remote: str, code: int) -> None:
    client = server.create_app(make_settings(tmp_path, ALLOWED_REGIONS="eu1")).test_client()
    response = notify(client, body=transcript_bytes(), environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == code
    assert (store.find(JOB_ID).status == State.DONE) is (code == 200)


def test_create_app_requires_a_webhook_secret(tmp_path: Path) -> None:
    settings = load_settings(environ={"DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}"})
    with pytest.raises(settings_module.SettingsError, match="WEBHOOK_SECRET"):
        server.create_app(settings)


# -- validation ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("job_id", ["../../etc/passwd", "ABCDEFGHIJ", "", "a" * 33, "abcdefg", "abcdefghij.json",
                                    "abcdefgh~j", "abcdefghij\n", "-"])
def test_a_bad_job_id_is_400(client: flask.testing.FlaskClient, tmp_path: Path, job_id: str) -> None:
    response = notify(client, job_id=job_id, body=transcript_bytes())
    assert response.status_code == 400
    assert response.get_json() == {"outcome": "invalid job id"}
    assert stored_files(tmp_path) == []


@pytest.mark.parametrize("status", ["", "done", "SUCCESS", "success ", "../x"])
def test_an_unknown_status_is_400(client: flask.testing.FlaskClient, store: JobStore, tmp_path: Path,
                                  status: str) -> None:
    response = notify(client, status=status, body=transcript_bytes())
    assert response.status_code == 400
    assert response.get_json() == {"outcome": "invalid status"}
    assert stored_files(tmp_path) == []
    assert store.find(JOB_ID).status == State.RUNNING


def test_a_truncated_body_is_400_and_kept_for_an_operator(client: flask.testing.FlaskClient, store: JobStore,
                                                          tmp_path: Path) -> None:
    response = notify(client, body=transcript_bytes()[:500])
    assert response.status_code == 400
    assert response.get_json() == {"outcome": "unreadable body"}
    assert not (transcripts_dir(tmp_path) / f"{JOB_ID}.json").exists()
    assert (transcripts_dir(tmp_path) / ".unreadable" / f"{JOB_ID}.body").exists()
    assert store.find(JOB_ID).status == State.RUNNING


def test_a_body_over_the_limit_is_413(tmp_path: Path, store: JobStore) -> None:
    client = server.create_app(make_settings(tmp_path, MAX_NOTIFICATION_MB="1")).test_client()
    response = notify(client, body=b" " * (1024 * 1024) + transcript_bytes())
    assert response.status_code == 413
    assert stored_files(tmp_path) == []
    assert store.find(JOB_ID).status == State.RUNNING


def test_a_streamed_body_without_length_over_the_limit_is_413(tmp_path: Path, store: JobStore) -> None:
    client = server.create_app(make_settings(tmp_path, MAX_NOTIFICATION_MB="1")).test_client()
    body = b" " * (1024 * 1024) + transcript_bytes()
    response = client.post("/webhook", query_string={"id": JOB_ID, "status": "success"}, headers=AUTH,
                           content_type="application/json", input_stream=io.BytesIO(body),
                           environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == 413
    assert stored_files(tmp_path) == []
    assert store.find(JOB_ID).status == State.RUNNING


# -- success and failure -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["post", "put"])
def test_a_json_transcript_is_stored_and_the_job_done(client: flask.testing.FlaskClient, store: JobStore,
                                                      tmp_path: Path, method: str) -> None:
    body = transcript_bytes()
    response = notify(client, body=body, method=method)
    assert response.status_code == 200
    assert response.get_json() == {"outcome": "done"}
    stored = transcripts_dir(tmp_path) / f"{JOB_ID}.json"
    assert stored.read_bytes() == body
    job = store.find(JOB_ID)
    assert job.status == State.DONE
    assert job.transcript == str(stored)
    assert stored_files(tmp_path) == [stored]  # nothing left in .incoming


def test_a_multipart_transcript_is_stored(client: flask.testing.FlaskClient, store: JobStore, tmp_path: Path) -> None:
    body = transcript_bytes()
    response = client.post("/webhook", query_string={"id": JOB_ID, "status": "success"}, headers=AUTH,
                           data={"data_file": (io.BytesIO(body), "transcript.json", "application/json")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    assert (transcripts_dir(tmp_path) / f"{JOB_ID}.json").read_bytes() == body
    assert store.find(JOB_ID).status == State.DONE


def test_a_duplicate_is_200_and_writes_nothing_more(client: flask.testing.FlaskClient, store: JobStore,
                                                    tmp_path: Path) -> None:
    first = transcript_bytes()
    assert notify(client, body=first).get_json() == {"outcome": "done"}
    stored = transcripts_dir(tmp_path) / f"{JOB_ID}.json"
    before = stored.stat()
    second = json.dumps({**json.loads(first), "format": "2.8"}).encode()
    response = notify(client, body=second)
    assert response.status_code == 200
    assert response.get_json() == {"outcome": "duplicate"}
    assert stored.read_bytes() == first
    assert stored.stat().st_ino == before.st_ino
    assert stored_files(tmp_path) == [stored]


@pytest.mark.parametrize("body", [b"", b"Hello, this is a transcript.\n"])
def test_a_success_without_a_transcript_and_no_api_key_waits_for_cronjob(client: flask.testing.FlaskClient,
                                                                        store: JobStore, tmp_path: Path,
                                                                        body: bytes) -> None:
    response = notify(client, body=body, content_type="text/plain")
    assert response.status_code == 202
    assert response.get_json() == {"outcome": "waiting"}
    assert stored_files(tmp_path) == []
    assert store.find(JOB_ID).status == State.RUNNING


@pytest.mark.parametrize("status", ["error", "fetch_error", "trim_error"])
def test_a_failure_is_recorded_with_the_bodys_error(client: flask.testing.FlaskClient, store: JobStore,
                                                    tmp_path: Path, status: str) -> None:
    info = {"id": JOB_ID, "created_at": "2025-06-30T11:43:54.135Z", "data_name": "a.wav", "duration": 0,
            "tracking": {"reference": REFERENCE}, "errors": [{"message": "Job rejected due to invalid audio"}]}
    response = notify(client, status=status, body=json.dumps(info).encode())
    assert response.status_code == 200
    assert response.get_json() == {"outcome": "rejected"}
    job = store.find(JOB_ID)
    assert job.status == State.REJECTED
    assert job.error == "Job rejected due to invalid audio"
    assert stored_files(tmp_path) == []


def test_a_failure_without_an_error_names_the_status(client: flask.testing.FlaskClient, store: JobStore) -> None:
    assert notify(client, status="fetch_error", body=b"").get_json() == {"outcome": "rejected"}
    assert store.find(JOB_ID).error == "Speechmatics reported fetch_error"


def test_a_failure_after_done_is_a_duplicate(client: flask.testing.FlaskClient, store: JobStore) -> None:
    notify(client, body=transcript_bytes())
    response = notify(client, status="error", body=b"")
    assert response.get_json() == {"outcome": "duplicate"}
    assert store.find(JOB_ID).status == State.DONE


# -- health, routes and errors -----------------------------------------------------------------------------------------

def test_healthz_is_200(client: flask.testing.FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"outcome": "ok"}


@pytest.mark.parametrize("method, path, code", [("get", "/nope", 404), ("post", "/webhook/extra", 404),
                                                ("get", "/webhook", 405), ("delete", "/webhook", 405)])
def test_other_routes_and_methods_answer_json(client: flask.testing.FlaskClient, method: str, path: str,
                                              code: int) -> None:
    response = getattr(client, method)(path, headers=AUTH)
    assert response.status_code == code
    assert response.is_json
    assert set(response.get_json()) == {"outcome"}


def test_a_custom_webhook_path_is_served(tmp_path: Path, store: JobStore) -> None:
    client = server.create_app(make_settings(tmp_path, WEBHOOK_PATH="/hooks/speechmatics")).test_client()
    assert notify(client, body=transcript_bytes()).status_code == 404
    response = client.post("/hooks/speechmatics", query_string={"id": JOB_ID, "status": "success"}, headers=AUTH,
                           data=transcript_bytes(), content_type="application/json")
    assert response.status_code == 200


def test_an_unexpected_error_is_500_without_a_traceback(client: flask.testing.FlaskClient,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(server, "read_body", broken)
    response = notify(client, body=transcript_bytes())
    assert response.status_code == 500
    assert response.get_json() == {"outcome": "internal error"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internals" not in text and "RuntimeError" not in text


@pytest.mark.parametrize("job_id, status, body", [("../x", "success", b"{}"), (JOB_ID, "bad", b"{}"),
                                                  (JOB_ID, "success", b'{"format": "2.9", "job": {'),
                                                  (JOB_ID, "success", b"[1]")])
def test_error_answers_are_short_json(client: flask.testing.FlaskClient, job_id: str, status: str,
                                      body: bytes) -> None:
    response = notify(client, job_id=job_id, status=status, body=body)
    assert 400 <= response.status_code < 500
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "File \"" not in text
    assert set(response.get_json()) == {"outcome"}


def test_create_app_does_not_connect_to_the_database(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "jobs.db"
    app = server.create_app(make_settings(tmp_path, DATABASE_URL=f"sqlite:///{missing}"))
    client = app.test_client()
    assert not missing.parent.exists()
    ready = client.get("/readyz")  # the database check moved here: /healthz is liveness only
    assert ready.status_code == 503
    assert ready.get_json() == {"outcome": "database unavailable"}
    assert client.get("/healthz").status_code == 200  # the process answers: no reason to restart it
    for status, body in (("success", transcript_bytes()), ("error", b""), ("success", b"")):
        response = notify(client, status=status, body=body)
        assert response.status_code == 503
        assert response.get_json() == {"outcome": "temporarily unavailable"}


class StubAPI:
    """The API's answer for GET /v2/jobs/{id}: the job's tracking.reference, or an error."""

    def __init__(self, references: dict[str, Any]) -> None:
        self.references = references

    def job(self, job_id: str) -> dict[str, Any]:
        from notification_flow.api import ApiError

        answer = self.references[job_id]
        if isinstance(answer, ApiError):
            raise answer
        return {"id": job_id, "config": {"tracking": {"reference": answer}}}


def test_a_row_without_a_job_id_takes_one_only_on_the_apis_word(tmp_path: Path, store: JobStore) -> None:
    from notification_flow.api import ApiError
    from notification_flow.auth import Guard
    from notification_flow.lifecycle import NotificationOutcome

    for reference in ("c" * 32, "d" * 32, "e" * 32):
        store.add_submission(reference, "x.wav")
    api = StubAPI({"cjob000001": "c" * 32, "other00001": {"reference": "d" * 32}, "failing001": ApiError("HTTP 500"),
                   JOB_ID: "d" * 32})
    guard = Guard(make_settings(tmp_path), store, api)  # type: ignore[arg-type]
    assert guard.refusal("d" * 32, "cjob000001") is NotificationOutcome.WRONG_JOB  # c's job, says the API
    assert guard.refusal("d" * 32, "other00001") is NotificationOutcome.WRONG_JOB  # not a reference at all
    assert guard.refusal("d" * 32, "failing001") is NotificationOutcome.UNPROVEN
    assert guard.refusal("d" * 32, JOB_ID) is NotificationOutcome.WRONG_JOB  # the API is wrong: REFERENCE has it
    assert store.find_by_reference("d" * 32).job_id is None
    assert guard.refusal("c" * 32, "cjob000001") is None
    assert store.find_by_reference("c" * 32).job_id == "cjob000001"
    assert guard.refusal("c" * 32, "cjob000001") is None  # now from the row itself
    assert guard.refusal("e" * 32, "cjob000001") is NotificationOutcome.WRONG_JOB
    assert guard.refusal("f" * 32, "cjob000001") is NotificationOutcome.UNAUTHENTICATED


def test_a_token_read_just_before_the_client_records_the_id_is_still_its_own(tmp_path: Path, store: JobStore,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the PostgreSQL soak met: the guard reads the token's row without a job id, then client.py
    records the id on that same row before the guard records it. The notification is this row's."""
    from notification_flow.auth import Guard

    store.add_submission("c" * 32, "c.wav")
    stale = store.find_by_reference("c" * 32)
    store.record_created("c" * 32, "joined0001")
    monkeypatch.setattr(store, "find_by_reference", lambda reference: stale)
    guard = Guard(make_settings(tmp_path), store, StubAPI({"joined0001": "c" * 32}))  # type: ignore[arg-type]
    assert guard.refusal("c" * 32, "joined0001") is None
