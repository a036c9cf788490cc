"""The /v2 API over real HTTP: shapes, status codes, lifecycle, listing, deletion, expiry, errors."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
import requests

from emulator import Emulator
from tests.emulator.support import AUTH, job_config, submit, submit_id, wait_for, wav_bytes

ERROR_ENUM = {
    "Bad Request", "File Expired", "Forbidden", "Resource Locked", "Format Not Supported", "Internal Server Error",
    "Job error", "Job Expired", "Job In Progress", "Job is not of type transcription", "Job not found",
    "Job rejected", "Job rejected due to invalid audio", "Job rejected due to invalid text", "Malformed request",
    "Missing callback", "Missing data_file", "No language selected", "Not Implemented", "Permission Denied",
    "Requested product not available", "Transcription not ready", "Log file not available",
    "Unprocessable Entity", "Max concurrent running jobs exceeded",
}


def get(url: str, **params: str) -> requests.Response:
    return requests.get(url, headers=AUTH, params=params, timeout=10)


def assert_error(response: requests.Response, code: int, error: str) -> dict:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code and body["error"] == error and body["error"] in ERROR_ENUM
    return body


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdC1rZXk="}, {"Authorization": ""}]
)
def test_every_call_needs_the_bearer_key(emu: Emulator, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/abc"), ("DELETE", "/jobs/abc"),
                         ("GET", "/jobs/abc/transcript"), ("GET", "/usage"), ("GET", "/nope")]:
        response = requests.request(method, emu.url + path, headers=headers, timeout=10)
        assert_error(response, 401, "Permission Denied")
        assert response.headers["Request-Id"]
    control = requests.get(f"{emu.base_url}/_emulator/stats", headers=headers, timeout=10)
    assert control.status_code == 401


def test_submitted_job_has_the_documented_fields(emu: Emulator) -> None:
    config = job_config(tracking={"title": "t", "reference": "ref-1", "tags": ["a"], "details": {"k": 1}})
    response = requests.post(f"{emu.url}/jobs", headers=AUTH, timeout=10,
                             files={"data_file": ("call.wav", wav_bytes(3.4)), "config": (None, json.dumps(config))})
    assert response.status_code == 201 and response.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[a-f0-9]{32}", response.headers["Request-Id"])
    assert set(response.json()) == {"id"}
    job_id = response.json()["id"]
    assert re.fullmatch(r"[a-z0-9]{10}", job_id)

    job = get(f"{emu.url}/jobs/{job_id}").json()["job"]
    assert job["id"] == job_id and job["status"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job["created_at"])
    assert job["data_name"] == "call.wav"
    assert job["duration"] == 3  # 3.4 s of WAV, read with the wave module
    assert job["config"] == config  # echoed as submitted, tracking included
    assert "errors" not in job  # omitted while empty, as the service does


def test_lifecycle_running_then_done_with_transcript(emu: Emulator) -> None:
    job_id = submit_id(emu.url)
    missing = get(f"{emu.url}/jobs/{job_id}/transcript")
    assert_error(missing, 404, "Transcription not ready")
    wait_for(lambda: get(f"{emu.url}/jobs/{job_id}").json()["job"]["status"] == "done", message="done")
    transcript = get(f"{emu.url}/jobs/{job_id}/transcript")
    assert transcript.status_code == 200 and transcript.headers["Content-Type"] == "application/json"
    assert transcript.content == emu.transcript_bytes(job_id)
    assert transcript.json()["job"]["id"] == job_id
    for fmt in ("txt", "srt"):
        text = get(f"{emu.url}/jobs/{job_id}/transcript", format=fmt)
        assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")
    assert_error(get(f"{emu.url}/jobs/{job_id}/transcript", format="docx"), 422, "Unprocessable Entity")


def test_unknown_job_is_404_everywhere(emu: Emulator) -> None:
    assert_error(get(f"{emu.url}/jobs/zzzzzzzzzz"), 404, "Job not found")
    assert_error(get(f"{emu.url}/jobs/zzzzzzzzzz/transcript"), 404, "Job not found")
    deleted = requests.delete(f"{emu.url}/jobs/zzzzzzzzzz", headers=AUTH, timeout=10)
    assert_error(deleted, 404, "Job not found")
    assert_error(get(f"{emu.url}/jobs/zzzzzzzzzz/log"), 404, "Log file not available")


def test_trailing_slashes_and_sdk_query_parameters_are_accepted(emu: Emulator) -> None:
    job_id = submit_id(emu.url + "/")
    assert get(f"{emu.url}/jobs/", **{"sm-sdk": "python-5.0.0", "sm-app": "x"}).status_code == 200
    assert get(f"{emu.url}/jobs/{job_id}/", **{"sm-sdk": "python-cli-5"}).json()["job"]["id"] == job_id
    assert get(f"{emu.url}/usage/").status_code == 200


@pytest.mark.parametrize(
    ("config", "detail"),
    [
        ("{not json", "JSON is invalid"),
        ("[1, 2]", "JSON is invalid"),
        (json.dumps({"transcription_config": {"language": "en"}}), "type is required"),
        (json.dumps({"type": "alignment", "transcription_config": {"language": "en"}}), "must be 'transcription'"),
        (json.dumps({"type": "transcription"}), "transcription_config"),
        (json.dumps({"type": "transcription", "transcription_config": {}}), "language is required"),
        (json.dumps(job_config(notification_config=[{"url": "http://127.0.0.1:9/x"}] * 4)), "at most 3"),
        (json.dumps(job_config(notification_config=[{"url": "http://h/x", "contents": ["summary"]}])), "summary"),
        (json.dumps(job_config(notification_config=[{"url": "ftp://h/x"}])), "http(s) URL"),
        (json.dumps(job_config(notification_config=[{"url": "http://h/x", "method": "get"}])), "'post' or 'put'"),
        (json.dumps(job_config(notification_config=[{"url": "http://h/x", "auth_headers": ["nocolon"]}])),
         "Name: value"),
    ],
)
def test_invalid_config_is_rejected_with_a_detail(emu: Emulator, config: str, detail: str) -> None:
    response = requests.post(f"{emu.url}/jobs", headers=AUTH, timeout=10,
                             files={"data_file": ("a.wav", wav_bytes(0.5)), "config": (None, config)})
    body = assert_error(response, 400, "Job rejected")
    assert detail in body["detail"]
    assert get(f"{emu.url}/jobs").json()["jobs"] == []


def test_missing_config_or_data(emu: Emulator) -> None:
    no_config = requests.post(f"{emu.url}/jobs", headers=AUTH, files={"data_file": ("a.wav", b"x")}, timeout=10)
    assert "config" in assert_error(no_config, 400, "Job rejected")["detail"]
    no_data = requests.post(f"{emu.url}/jobs", headers=AUTH, files={"config": (None, json.dumps(job_config()))},
                            timeout=10)
    assert_error(no_data, 400, "Missing data_file")
    both = requests.post(f"{emu.url}/jobs", headers=AUTH, timeout=10, files={
        "data_file": ("a.wav", wav_bytes(0.5)),
        "config": (None, json.dumps(job_config(fetch_data={"url": "http://127.0.0.1:9/a.wav"})))})
    assert_error(both, 400, "Job rejected")


def test_listing_is_newest_first_with_limit_cursor_and_deleted(emu: Emulator) -> None:
    ids = [submit_id(emu.url, name=f"{n}.wav") for n in range(5)]
    jobs = get(f"{emu.url}/jobs").json()["jobs"]
    assert [job["id"] for job in jobs] == ids[::-1]
    assert all("config" in job for job in jobs)

    first_page = get(f"{emu.url}/jobs", limit="2").json()["jobs"]
    assert [job["id"] for job in first_page] == ids[:-3:-1]
    cursor = first_page[-1]["created_at"]
    next_page = get(f"{emu.url}/jobs", limit="2", created_before=cursor).json()["jobs"]
    assert [job["id"] for job in next_page] == [ids[2], ids[1]]
    nanos = cursor.replace("Z", "999999+00:00")  # up to nanosecond precision, truncated to milliseconds
    assert [job["id"] for job in get(f"{emu.url}/jobs", created_before=nanos).json()["jobs"]] == ids[2::-1]

    requests.delete(f"{emu.url}/jobs/{ids[0]}", headers=AUTH, params={"force": "true"}, timeout=10)
    assert ids[0] not in [job["id"] for job in get(f"{emu.url}/jobs").json()["jobs"]]
    with_deleted = get(f"{emu.url}/jobs", include_deleted="true").json()["jobs"]
    assert {job["id"]: job["status"] for job in with_deleted}[ids[0]] == "deleted"


@pytest.mark.parametrize("limit", ["0", "101", "ten", "1.5", "-1"])
def test_listing_limit_outside_1_to_100_is_422(emu: Emulator, limit: str) -> None:
    assert_error(get(f"{emu.url}/jobs", limit=limit), 422, "Unprocessable Entity")


@pytest.mark.parametrize(
    ("path", "params"),
    [("/jobs", {"created_before": "yesterday"}), ("/jobs", {"include_deleted": "maybe"}),
     ("/jobs/abc", {"wait": "soon"}), ("/jobs/abc/transcript", {"wait": "1.5"}), ("/usage", {"until": ""})],
)
def test_malformed_query_parameters_are_422(emu: Emulator, path: str, params: dict[str, str]) -> None:
    assert_error(get(emu.url + path, **params), 422, "Unprocessable Entity")
    assert_error(requests.delete(f"{emu.url}/jobs/abc", headers=AUTH, params={"force": "yes"}, timeout=10),
                 422, "Unprocessable Entity")


def test_undeclared_method_is_405_with_allow(emu: Emulator) -> None:
    response = requests.request("PATCH", f"{emu.url}/jobs", headers=AUTH, timeout=10)
    assert response.status_code == 405 and set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_delete_needs_force_while_running(make_emulator) -> None:
    emu = make_emulator(processing_seconds=3600)
    job_id = submit_id(emu.url)
    locked = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    assert_error(locked, 423, "Resource Locked")
    assert emu.job(job_id)["status"] == "running"
    forced = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, params={"force": "true"}, timeout=10)
    assert forced.status_code == 200 and forced.json()["job"]["status"] == "deleted"
    assert get(f"{emu.url}/jobs/{job_id}").json()["job"]["status"] == "deleted"
    assert_error(get(f"{emu.url}/jobs/{job_id}/transcript"), 404, "Job not found")


def test_deleted_and_rejected_jobs_can_be_deleted_again(emu: Emulator) -> None:
    """A repeated DELETE (a client retrying after a lost answer) is answered 200 with the deleted job."""
    done, rejected = submit_id(emu.url), submit_id(emu.url, b"not audio", name="x.bin")
    wait_for(lambda: {emu.job(done)["status"], emu.job(rejected)["status"]} == {"done", "rejected"},
             message="both jobs to end")
    for job_id in (done, rejected, done):
        answer = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
        assert answer.status_code == 200 and answer.json()["job"]["status"] == "deleted"
        assert answer.json()["job"]["id"] == job_id
    assert_error(get(f"{emu.url}/jobs/{done}/transcript"), 404, "Job not found")
    assert get(f"{emu.url}/jobs").json()["jobs"] == []
    listed = get(f"{emu.url}/jobs", include_deleted="true").json()["jobs"]
    assert {job["id"]: job["status"] for job in listed} == {done: "deleted", rejected: "deleted"}
    assert emu.job(rejected)["errors"]  # the reason the job was rejected outlives its deletion


def test_delete_of_a_finished_job_keeps_usage(emu: Emulator) -> None:
    job_id = submit_id(emu.url, wav_bytes(7.2))
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="done")
    before = get(f"{emu.url}/usage").json()
    deleted = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    assert deleted.json()["job"]["status"] == "deleted"
    after = get(f"{emu.url}/usage").json()
    assert before == after
    assert after["summary"] == [{"mode": "batch", "type": "transcription", "count": 1, "duration_hrs": 0.0019}]
    assert after["details"][0]["language"] == "en"
    assert re.fullmatch(r"\d{4}-\d\d-01T00:00:00Z", after["since"])


def test_usage_date_range(emu: Emulator) -> None:
    job_id = submit_id(emu.url)
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="done")
    assert get(f"{emu.url}/usage", since="2001-01-01", until="2001-12-31").json()["summary"] == []
    today = datetime.now().astimezone().date().isoformat()
    assert get(f"{emu.url}/usage", since="2001-01-01").json()["until"].startswith(today[:4])
    assert_error(get(f"{emu.url}/usage", since="01/02/2020"), 422, "Unprocessable Entity")


def test_expiry_after_retention_gives_410(make_emulator) -> None:
    emu = make_emulator(retention_seconds=0.5)
    job_id = submit_id(emu.url)
    wait_for(lambda: emu.job(job_id)["status"] == "expired", message="expiry")
    assert_error(get(f"{emu.url}/jobs/{job_id}"), 410, "Job Expired")
    assert_error(get(f"{emu.url}/jobs/{job_id}/transcript"), 410, "Job Expired")
    assert_error(requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10), 410, "Job Expired")
    assert get(f"{emu.url}/jobs").json()["jobs"] == []


def test_undecodable_audio_ends_rejected(emu: Emulator) -> None:
    job_id = submit_id(emu.url, b"this is not audio at all", name="notes.txt")
    job = wait_for(lambda: (j := emu.job(job_id))["status"] == "rejected" and j, message="rejection")
    assert job["duration"] == 0 and job["errors"][0]["message"].startswith("Job rejected due to invalid audio")
    assert_error(get(f"{emu.url}/jobs/{job_id}/transcript"), 404, "Job rejected")


def test_wait_parameter_blocks_until_the_job_ends(make_emulator) -> None:
    emu = make_emulator(processing_seconds=0.5)
    created = requests.post(f"{emu.url}/jobs", headers=AUTH, params={"wait": "5", "format": "txt"}, timeout=10,
                            files={"data_file": ("a.wav", wav_bytes(2)), "config": (None, json.dumps(job_config()))})
    body = created.json()
    assert created.status_code == 201 and body["status"] == "done" and body["txt"].endswith("\n")
    job_id = submit_id(emu.url)
    assert get(f"{emu.url}/jobs/{job_id}", wait="0").json()["job"]["status"] == "running"
    assert get(f"{emu.url}/jobs/{job_id}", wait="5").json()["job"]["status"] == "done"


def test_upload_over_the_size_cap_is_rejected(make_emulator) -> None:
    emu = make_emulator(max_upload_bytes=100_000)
    response = submit(emu.url, wav_bytes(10))  # 160 kB
    assert "too large" in assert_error(response, 400, "Job rejected")["detail"]
    assert submit(emu.url, wav_bytes(2)).status_code == 201
    assert list(emu.service.upload_dir.iterdir()) and len(list(emu.service.upload_dir.iterdir())) == 1


def test_log_endpoint_is_not_implemented_on_saas(emu: Emulator) -> None:
    job_id = submit_id(emu.url)
    assert_error(get(f"{emu.url}/jobs/{job_id}/log"), 501, "Not Implemented")


def test_unknown_route_is_a_json_404(emu: Emulator) -> None:
    response = get(f"{emu.url}/alignment")
    assert response.status_code == 404 and response.json()["code"] == 404
    assert response.headers["Request-Id"]


def test_an_unfinished_job_is_answered_after_the_services_default_wait_unless_wait_0(make_emulator) -> None:
    """The service waits about 2 s before answering for a job that is not finished; ?wait=0 answers at once."""
    import dataclasses

    from emulator import EmulatorOptions

    [default] = [f.default for f in dataclasses.fields(EmulatorOptions) if f.name == "default_wait_seconds"]
    assert default == 2.0
    emu = make_emulator(processing_seconds=600, default_wait_seconds=default)
    job_id = submit_id(emu.url)
    for path in (f"{emu.url}/jobs/{job_id}", f"{emu.url}/jobs/{job_id}/transcript"):
        started = time.monotonic()
        get(path)
        assert 1.8 <= time.monotonic() - started < 5, path
        started = time.monotonic()
        get(path, wait="0")
        assert time.monotonic() - started < 1, path
