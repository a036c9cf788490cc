"""server.py as Speechmatics and attackers see it: a real gunicorn process on a real port."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
import requests

from tests.integration.support import (
    SECRET,
    Stack,
    create_job,
    database_held,
    submit_like_client,
    token_for,
    transcript_files,
    wait_for,
)

# Every documented body shape (docs: batch/notifications "Return MIME types"), and PUT.
BODY_SHAPES = {
    "contents omitted: multipart data_file": {},
    "transcript as JSON": {"contents": ["transcript"]},
    "transcript.json-v2 as JSON": {"contents": ["transcript.json-v2"]},
    "jobinfo as JSON": {"contents": ["jobinfo"]},
    "transcript.txt as text": {"contents": ["transcript.txt"]},
    "transcript.srt as text": {"contents": ["transcript.srt"]},
    "empty body": {"contents": []},
    "multipart transcript and jobinfo": {"contents": ["transcript", "jobinfo"]},
    "multipart txt, srt and data": {"contents": ["transcript.txt", "transcript.srt", "data"]},
    "data alone": {"contents": ["data"]},
    "PUT with transcript": {"contents": ["transcript"], "method": "put"},
}


def nothing_written(stack: Stack) -> bool:
    stored = [p for p in stack.transcripts.rglob("*") if p.is_file()]
    return stored == []


def done_job(stack: Stack) -> str:
    """A job finished at the emulator whose notification was lost, so a test can deliver its own."""
    stack.emulator.set_faults(drop_fraction=1.0)
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    return job_id


@pytest.mark.emulator(rate_limit_post_per_second=0)
def test_every_documented_body_shape_stores_the_transcript(served: Stack) -> None:
    jobs = {shape: submit_like_client(served, notification)[1] for shape, notification in BODY_SHAPES.items()}
    for shape, job_id in jobs.items():
        wait_for(lambda job_id=job_id: served.store().find(job_id).status == "done", message=shape)
        stored = served.transcripts / f"{job_id}.json"
        assert stored.read_bytes() == served.emulator.transcript_bytes(job_id), shape
    # The emulator records a delivery once it has read our answer, which may be just after the job is done.
    wait_for(lambda: {d["method"].upper() for d in served.emulator.deliveries()} == {"POST", "PUT"},
             message="the emulator to record a POST and a PUT delivery")


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", f"Bearer {SECRET[:-1]}", f"Bearer {SECRET}x", f"bearer {SECRET.upper()}",
    f"Basic {SECRET}", SECRET, f"Bearer  {SECRET}", f"Bearer {SECRET};", "Bearer \u00e9\u00e9\u00e9",
])
def test_wrong_missing_and_almost_right_secrets_are_refused(served: Stack, authorization: str | None) -> None:
    job_id = done_job(served)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.post(served.webhook_url, params={"id": job_id, "status": "success"}, headers=headers,
                             data=served.emulator.transcript_bytes(job_id), timeout=10)
    assert response.status_code == 401
    assert nothing_written(served)
    assert served.store().find(job_id).status == "running"


def test_previous_secret_is_accepted_during_rotation(stack: Stack) -> None:
    stack.start_server(WEBHOOK_SECRET="a-brand-new-secret-0123456789", WEBHOOK_SECRET_PREVIOUS=SECRET)
    job_id = done_job(stack)
    response = stack.notify(job_id, body=stack.emulator.transcript_bytes(job_id), content_type="application/json")
    assert response.status_code == 200
    assert stack.store().find(job_id).status == "done"


@pytest.mark.parametrize("job_id", [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "abc/def/gh", "..", "ABCDEFGHIJ", "",
    "a" * 33, "abcdefghij\x00", "abcdefghij.json", "abcdefgh~j", "abcdefghij\n",
])
def test_path_traversal_and_malformed_ids_are_refused(served: Stack, job_id: str) -> None:
    response = served.notify(job_id, body=b'{"format": "2.9", "job": {}, "results": []}',
                             content_type="application/json")
    assert response.status_code == 400
    assert nothing_written(served)
    assert not (served.tmp / "etc").exists()


@pytest.mark.parametrize("status", ["", "done", "SUCCESS", "success ", "../x"])
def test_unknown_notification_status_is_refused(served: Stack, status: str) -> None:
    job_id = done_job(served)
    response = served.notify(job_id, status=status, body=served.emulator.transcript_bytes(job_id),
                             content_type="application/json")
    assert response.status_code == 400
    assert served.store().find(job_id).status == "running"


def test_oversized_bodies_are_refused(stack: Stack) -> None:
    stack.start_server(MAX_NOTIFICATION_MB="1")
    job_id = done_job(stack)
    big = b'{"format": "2.9", "job": {}, "results": [' + b'{"type": "word"},' * 100_000 + b'{}]}'

    def chunks():
        yield from (big[i:i + 65536] for i in range(0, len(big), 65536))

    auth = token_for(stack, job_id)
    params = {"id": job_id, "status": "success"}
    with_length = requests.post(stack.webhook_url, params=params, data=big, timeout=30,
                                headers={**auth, "Content-Type": "application/json"})
    chunked = requests.post(stack.webhook_url, params=params, data=chunks(), timeout=30,
                            headers={**auth, "Content-Type": "application/json"})
    multipart = requests.post(stack.webhook_url, params=params, headers=auth, timeout=30,
                              files={"data_file": ("transcript.json", big, "application/json")})
    assert [with_length.status_code, chunked.status_code, multipart.status_code] == [413, 413, 413]
    assert nothing_written(stack)
    assert stack.store().find(job_id).status == "running"


def test_unparseable_body_is_kept_for_inspection_and_refused(served: Stack) -> None:
    job_id = done_job(served)
    truncated = served.emulator.transcript_bytes(job_id)[:-20]
    for _ in range(3):  # Speechmatics retries; one copy is enough
        response = served.notify(job_id, body=truncated, content_type="application/json")
        assert response.status_code == 400
    kept = list((served.transcripts / ".unreadable").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == truncated
    assert transcript_files(served.transcripts) == []
    assert served.store().find(job_id).status == "running"


def test_transcript_of_another_job_is_refused(served: Stack) -> None:
    job_id = done_job(served)
    other = "zzzzzzzzzz"
    served.store().add_submission("f" * 32, "other.wav")
    served.store().record_created("f" * 32, other)  # the other job's own token: only the body is wrong
    response = served.notify(other, body=served.emulator.transcript_bytes(job_id), content_type="application/json")
    assert response.status_code == 400
    assert transcript_files(served.transcripts) == []


def test_answers_are_json_and_never_a_stack_trace(served: Stack) -> None:
    base = served.webhook_url.rsplit("/", 1)[0]
    for response in (requests.get(served.webhook_url, timeout=5), requests.get(f"{base}/nowhere", timeout=5),
                     served.notify("../x"), served.notify("abcdefghij", secret="wrong-secret-0123456789")):
        assert response.status_code in (400, 401, 404, 405)
        assert response.headers["Content-Type"] == "application/json"
        assert "Traceback" not in response.text and "Werkzeug Debugger" not in response.text
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"outcome": "ok"}


def test_database_fault_is_answered_503_and_the_retry_succeeds(served: Stack) -> None:
    job_id = done_job(served)
    reference = served.store().find(job_id).reference  # looked up before the database is locked
    body = served.emulator.transcript_bytes(job_id)
    with database_held(served.database_url, "jobs"):
        first = served.notify(job_id, body=body, content_type="application/json", reference=reference)
    assert first.status_code == 503
    assert served.store().find(job_id).status == "running"
    retry = served.notify(job_id, body=body, content_type="application/json")
    assert retry.status_code == 200
    assert served.store().find(job_id).status == "done"
    assert (served.transcripts / f"{job_id}.json").read_bytes() == body


def test_disk_fault_is_answered_503_and_the_retry_succeeds(served: Stack) -> None:
    job_id = done_job(served)
    body = served.emulator.transcript_bytes(job_id)
    incoming = served.transcripts / ".incoming"
    shutil.rmtree(incoming)
    incoming.write_text("not a directory: every temporary file fails")
    try:
        first = served.notify(job_id, body=body, content_type="application/json")
    finally:
        incoming.unlink()
        incoming.mkdir()
    assert first.status_code == 503
    assert served.store().find(job_id).status == "running"
    assert served.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert served.store().find(job_id).status == "done"


def test_concurrent_duplicates_write_once(served: Stack) -> None:
    job_id = done_job(served)
    body = served.emulator.transcript_bytes(job_id)
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def deliver() -> None:
        barrier.wait()
        codes.append(served.notify(job_id, body=body, content_type="application/json").status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    stored = served.transcripts / f"{job_id}.json"
    assert stored.read_bytes() == body and os.stat(stored).st_nlink == 1
    outcomes = [line for line in served.server_log().splitlines() if f"job={job_id}" in line]
    assert sum("outcome=done" in line for line in outcomes) == 1, outcomes


def test_late_notification_for_a_finished_job_changes_nothing(served: Stack) -> None:
    job_id = done_job(served)
    body = served.emulator.transcript_bytes(job_id)
    assert served.notify(job_id, body=body, content_type="application/json").status_code == 200
    stored = served.transcripts / f"{job_id}.json"
    before = (stored.stat().st_ino, stored.stat().st_mtime_ns)
    late_failure = served.notify(job_id, status="error", body=b"", content_type="application/json")
    assert late_failure.status_code == 200
    assert served.store().find(job_id).status == "done"
    assert (stored.stat().st_ino, stored.stat().st_mtime_ns) == before


def test_notification_before_the_job_is_recorded_joins_its_row_on_the_apis_word(served: Stack) -> None:
    served.emulator.set_faults(hold_notifications=True)
    reference, job_id = submit_like_client(served, {"contents": ["transcript"]}, record=False)
    held = wait_for(lambda: [h for h in served.emulator.held() if h["job_id"] == job_id], message="notification")
    assert served.store().find_by_reference(reference).status == "submitting"
    assert served.emulator.deliver(held[0]["key"])["outcome"] == 200
    job = served.store().find_by_reference(reference)
    assert (job.job_id, job.status) == (job_id, "done")
    served.store().record_created(reference, job_id)  # the client catches up: nothing moves back
    assert served.store().find(job_id).status == "done"


@pytest.mark.emulator(processing_seconds=3600)
@pytest.mark.parametrize("outcome, contents, final", [
    ("rejected", [], "rejected"),
    ("done", [], "running"),
    ("done", ["transcript.txt"], "running"),
])
def test_notification_before_the_job_is_recorded_without_api_access_is_retried_until_it_is(
        stack: Stack, outcome: str, contents: list[str], final: str) -> None:
    """Without an API key nothing can say whose job the notification's id is: 503, nothing written, and
    Speechmatics' retry is applied once client.py has recorded the id, whatever the body holds."""
    stack.start_server(SPEECHMATICS_API_KEY="")
    stack.emulator.set_faults(hold_notifications=True)
    reference, job_id = submit_like_client(stack, {"contents": contents}, record=False)
    stack.emulator.finish(job_id, outcome=outcome)
    held = wait_for(lambda: [h for h in stack.emulator.held() if h["job_id"] == job_id], message="notification")
    assert stack.emulator.duplicate(held[0]["key"])["outcome"] == 503
    job = stack.store().find_by_reference(reference)
    assert (job.job_id, job.status) == (None, "submitting") and transcript_files(stack.transcripts) == []
    assert stack.store().record_created(reference, job_id).status == "running"
    assert stack.emulator.deliver(held[0]["key"])["outcome"] in (200, 202)
    assert stack.store().find(job_id).status == final
    if final == "running":  # success without a transcript: cronjob.py fetches it
        assert stack.cronjob("--all").returncode == 0
        assert stack.store().find(job_id).status == "done"


def test_a_token_for_a_reference_we_never_recorded_is_refused(served: Stack) -> None:
    """Correctly signed, but no row of ours has that reference: nothing is stored or kept."""
    served.emulator.set_faults(drop_fraction=1.0)
    job_id = create_job(served, "not-one-of-ours", {"contents": ["transcript"]})
    wait_for(lambda: served.emulator.job(job_id)["status"] == "done", message="job")
    body = served.emulator.transcript_bytes(job_id)
    response = served.notify(job_id, body=body, content_type="application/json", reference="not-one-of-ours")
    assert response.status_code == 401
    assert transcript_files(served.transcripts) == []


def test_egress_allowlist_refuses_other_addresses_and_honours_trusted_proxies(stack: Stack) -> None:
    stack.start_server(ALLOWED_REGIONS="eu1", TRUSTED_PROXIES="1")
    job_id = done_job(stack)
    body = stack.emulator.transcript_bytes(job_id)
    headers = {**token_for(stack, job_id), "Content-Type": "application/json"}
    params = {"id": job_id, "status": "success"}

    def post(forwarded_for: str | None) -> int:
        extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return requests.post(stack.webhook_url, params=params, data=body, headers={**headers, **extra},
                             timeout=10).status_code

    assert post(None) == 403  # 127.0.0.1 is not a Speechmatics address
    assert post("52.149.21.32") == 403  # a US1 address, but only EU1 is allowed
    assert post("40.74.41.91, 10.0.0.1") == 403  # spoofed first hop: only the proxy's own entry counts
    assert nothing_written(stack)
    assert post("10.0.0.1, 40.74.41.91") == 200
    assert stack.store().find(job_id).status == "done"


def test_log_has_one_line_per_notification_and_no_secrets_or_transcript_text(served: Stack) -> None:
    job_id = done_job(served)
    body = served.emulator.transcript_bytes(job_id)
    assert served.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert served.notify(job_id, secret="wrong-secret-0123456789").status_code == 401
    lines = [line for line in served.server_log().splitlines() if " notification job=" in line]
    assert len(lines) == 2
    assert f"outcome=done code=200 stored={job_id}.json ms=" in lines[0]
    assert "outcome=unauthenticated code=401" in lines[1]
    words = {r["alternatives"][0]["content"] for r in json.loads(body)["results"] if len(r["alternatives"][0]
                                                                                      ["content"]) > 6}
    log = served.server_log()
    assert SECRET not in log and "wrong-secret" not in log
    assert not [word for word in words if word in log]


@pytest.mark.parametrize("job_fields", [{"tracking": {"reference": 1.5}}, {"tracking": {"reference": 7}},
                                        {"tracking": None}, {"tracking": ["x"]}])
def test_odd_types_in_the_job_fields_never_cause_a_500(served: Stack, job_fields: dict) -> None:
    job_id = done_job(served)
    transcript = json.loads(served.emulator.transcript_bytes(job_id))
    transcript["job"].update(job_fields)
    response = served.notify(job_id, body=json.dumps(transcript).encode(), content_type="application/json")
    assert response.status_code == 200
    assert served.store().find(job_id).status == "done"


def test_a_transcript_too_large_to_parse_in_memory_is_streamed_and_stored(served: Stack) -> None:
    job_id = done_job(served)
    transcript = json.loads(served.emulator.transcript_bytes(job_id))
    transcript["results"] = transcript["results"] * (3_000_000 // len(json.dumps(transcript["results"])) + 1)
    body = json.dumps(transcript).encode()
    assert len(body) > 2 * 1024 * 1024
    truncated = served.notify(job_id, body=body[:-1], content_type="application/json")
    assert truncated.status_code == 400 and served.store().find(job_id).status == "running"
    assert served.notify(job_id, body=body, content_type="application/json").status_code == 200
    assert (served.transcripts / f"{job_id}.json").read_bytes() == body
