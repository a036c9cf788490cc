"""Fault injection: dropped, duplicated, delayed and failing notifications, API errors, rate limits."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from emulator import Emulator, EmulatorOptions
from emulator.transcripts import render_srt
from tests.emulator.support import AUTH, Receiver, job_config, submit, submit_id, wait_for, wav_bytes


def entries(receiver: Receiver, *paths: str) -> list[dict]:
    return [{"url": receiver.url(path), "contents": ["jobinfo"]} for path in paths]


def test_dropped_notifications_are_never_sent(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(drop_fraction=1.0, processing_seconds=0.05)
    job_id = submit_id(emu.url, notification_config=entries(receiver, "/a", "/b"))
    deliveries = wait_for(lambda: len(emu.deliveries()) == 2 and emu.deliveries(), message="drop records")
    assert {(d["url"], d["outcome"], d["job_id"]) for d in deliveries} == {
        (receiver.url("/a"), "dropped", job_id), (receiver.url("/b"), "dropped", job_id)}
    other = submit_id(emu.url)
    wait_for(lambda: emu.job(other)["status"] == "done", message="a later job")  # the emulator kept going
    assert receiver.got() == [] and "errors" not in emu.job(job_id)


def test_drop_fraction_is_seeded_and_replayable(make_emulator, receiver: Receiver) -> None:
    def dropped_pattern(seed: int) -> list[str]:
        emu = make_emulator(seed=seed, drop_fraction=0.5, processing_seconds=0.05, rate_limit_post_per_second=0)
        ids = [submit_id(emu.url, notification_config=entries(receiver, f"/s{seed}")) for _ in range(12)]
        wait_for(lambda: len(emu.deliveries()) == 12, message="12 outcomes")
        outcome = {d["job_id"]: d["outcome"] for d in emu.deliveries()}
        return [str(outcome[job_id]) for job_id in ids]

    first, again, other = dropped_pattern(3), dropped_pattern(3), dropped_pattern(4)
    assert first == again
    assert {"dropped", "200"} == set(first)
    assert first != other


def test_duplicates_are_sent_twice(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(duplicate_fraction=1.0)
    job_id = submit_id(emu.url, notification_config=entries(receiver, "/hook"))
    first, second = receiver.wait(2)
    assert first.body == second.body and first.query == second.query == {"id": [job_id], "status": ["success"]}
    flags = sorted(d["duplicate"] for d in wait_for(lambda: len(emu.deliveries()) == 2 and emu.deliveries()))
    assert flags == [False, True]


def test_delay_reorders_notifications(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(delay_max_seconds=1.0, processing_seconds=0.05, seed=11)
    config = entries(receiver, "/1", "/2", "/3")
    submit_id(emu.url, notification_config=config)
    got = receiver.wait(3, timeout=5)
    order = [r.path for r in got]
    assert order != ["/1", "/2", "/3"]  # seed 11 is known to shuffle them; the same seed always does
    plan = [emu.service.faults.plan(got[0].query["id"][0], index).delay for index in range(3)]
    assert max(plan) <= 1.0 and sorted(range(3), key=lambda i: plan[i]) == [int(p[1]) - 1 for p in order]


def test_failing_first_attempts_without_sending(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fail_first_attempts=2)
    job_id = submit_id(emu.url, notification_config=entries(receiver, "/hook"))
    [request] = receiver.wait(1)
    # The receiver records the request before answering; the delivery is recorded once the answer is back.
    deliveries = wait_for(lambda: len(emu.deliveries()) == 3 and emu.deliveries(), message="3 delivery records")
    outcomes = [(d["attempt"], d["outcome"]) for d in deliveries]
    assert outcomes == [(1, "error: injected failure (not sent)"), (2, "error: injected failure (not sent)"), (3, 200)]
    errors = emu.job(job_id)["errors"]
    assert len(errors) == 2 and all("injected failure" in e["message"] and e["message"].endswith(", retrying")
                                    for e in errors)
    assert request.query["status"] == ["success"]


def test_all_attempts_failing_ends_with_sending_notification_failed(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fail_first_attempts=9, notify_retry_delays=(0.05, 0.05))
    job_id = submit_id(emu.url, notification_config=entries(receiver, "/hook"))
    errors = wait_for(lambda: len(emu.job(job_id).get("errors", [])) == 4 and emu.job(job_id)["errors"])
    assert errors[-1]["message"] == "Sending notification failed"
    assert emu.job(job_id)["status"] == "done" and receiver.got() == []


@pytest.mark.parametrize("omit", [False, True])
def test_injected_429_with_and_without_retry_after(make_emulator, omit: bool) -> None:
    emu = make_emulator(api_429_fraction=1.0, retry_after_seconds=7, omit_retry_after=omit)
    response = requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10)
    assert response.status_code == 429 and response.json()["code"] == 429
    assert response.headers.get("Retry-After") == (None if omit else "7")
    assert emu.stats()["injected_429"] == 1


def test_injected_503_and_mixed_fractions(make_emulator) -> None:
    emu = make_emulator(api_503_fraction=1.0)
    response = submit(emu.url)
    assert response.status_code == 503 and response.json() == {
        "code": 503, "error": "Internal Server Error", "detail": "Service temporarily unavailable (injected fault)"}
    assert emu.stats()["jobs_created"] == 0
    emu.set_faults(api_503_fraction=0.3, api_429_fraction=0.3, rate_limit_get_per_second=0)
    codes = [requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10).status_code for _ in range(60)]
    stats = emu.stats()
    assert stats["injected_429"] == codes.count(429) and stats["injected_503"] == codes.count(503) + 1
    assert 5 < codes.count(429) < 35 and 5 < codes.count(503) < 35 and codes.count(200) > 5


def test_faults_limited_to_some_routes_fail_only_those(make_emulator) -> None:
    """E.g. every DELETE answered 500, deleting nothing, while everything else works: a retry later succeeds."""
    emu = make_emulator(processing_seconds=0.05, api_500_fraction=1.0, api_fault_routes=["DELETE /v2/jobs/*"])
    job_id = submit_id(emu.url)
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="the job to finish")
    assert requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10).status_code == 200
    assert requests.get(f"{emu.url}/jobs/{job_id}/transcript", headers=AUTH, timeout=10).status_code == 200
    failed = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    assert failed.status_code == 500 and failed.json() == {
        "code": 500, "error": "Internal Server Error", "detail": "Internal error (injected fault)"}
    assert emu.job(job_id)["status"] == "done" and emu.transcript_bytes(job_id)
    assert emu.stats()["injected_500"] == 1
    emu.set_faults(api_500_fraction=0.0)
    deleted = requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    assert deleted.status_code == 200 and deleted.json()["job"]["status"] == "deleted"
    emu.set_faults(api_503_fraction=1.0, api_fault_routes=["GET /v2/jobs/{id}/transcript", "POST *"])
    assert submit(emu.url).status_code == 503
    assert requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10).status_code == 200
    emu.set_faults(api_fault_routes=[])  # none named: every route again
    assert requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10).status_code == 503


def test_narrowing_the_fault_routes_keeps_the_decisions_of_the_others(make_emulator) -> None:
    def codes(routes: list[str]) -> list[int]:
        emu = make_emulator(seed=4, api_500_fraction=0.5, api_fault_routes=routes, rate_limit_get_per_second=0)
        answers = []
        for _ in range(12):
            answers.append(requests.get(f"{emu.url}/usage", headers=AUTH, timeout=10).status_code)
            requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10)
        return answers

    everywhere, only_usage = codes([]), codes(["GET /v2/usage"])
    assert everywhere == only_usage and set(everywhere) == {200, 500}


def test_api_latency(make_emulator) -> None:
    emu = make_emulator(api_latency_ms=300)
    started = time.monotonic()
    requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    requests.get(f"{emu.base_url}/_emulator/stats", headers=AUTH, timeout=10)
    assert time.monotonic() - started < 0.3  # the control API is not slowed down


def test_reject_by_glob_and_fraction(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(reject_data_names=["bad-*.wav"])
    bad = submit_id(emu.url, name="bad-1.wav", notification_config=entries(receiver, "/hook"))
    good = submit_id(emu.url, name="good.wav")
    [request] = receiver.wait(1)
    assert request.query == {"id": [bad], "status": ["error"]}
    wait_for(lambda: emu.job(good)["status"] == "done", message="the good job")
    assert emu.job(bad)["status"] == "rejected"
    emu.set_faults(reject_data_names=[], reject_fraction=1.0)
    chosen = submit_id(emu.url)
    wait_for(lambda: emu.job(chosen)["status"] == "rejected", message="rejection by fraction")


def test_documented_rate_limits_by_default(make_emulator) -> None:
    """Small concurrent bursts, well inside one 1 s window even on a busy machine; admission is atomic,
    so exactly the limit gets through whatever the order."""
    emu = make_emulator()
    with ThreadPoolExecutor(6) as pool:
        posts = list(pool.map(lambda _: submit(emu.url, wav_bytes(0.2)), range(12)))
        gets = list(pool.map(lambda _: requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10), range(55)))
    assert sorted(r.status_code for r in posts) == [201] * 10 + [429] * 2
    limited = [r for r in posts + gets if r.status_code == 429]
    assert all(r.json()["code"] == 429 and r.headers["Retry-After"] == "1" for r in limited)
    assert sorted(r.status_code for r in gets) == [200] * 50 + [429] * 5
    stats = emu.stats()
    assert stats["max_posts_per_second"] == 12 and stats["max_gets_per_second"] == 55
    assert stats["rate_limited_post_jobs"] == 2 and stats["rate_limited_get"] == 5 and stats["rate_limited"] == 7
    assert stats["requests"]["POST /v2/jobs"] == 12 and stats["requests"]["GET /v2/jobs"] == 55


def test_rate_limits_can_be_changed_or_disabled(make_emulator) -> None:
    emu = make_emulator(rate_limit_post_per_second=2, rate_limit_get_per_second=0)
    codes = [submit(emu.url, wav_bytes(0.2)).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert all(requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10).ok for _ in range(70))
    emu.set_faults(rate_limit_post_per_second=0)
    assert all(submit(emu.url, wav_bytes(0.2)).status_code == 201 for _ in range(15))


def test_faults_over_http(emu: Emulator) -> None:
    control = f"{emu.base_url}/_emulator/faults"
    current = requests.get(control, headers=AUTH, timeout=10).json()
    assert current["drop_fraction"] == 0.0 and current["rate_limit_post_per_second"] == 10 and current["seed"] == 1
    changed = requests.put(control, headers=AUTH, json={"drop_fraction": 0.25, "reject_data_names": ["x*"]},
                           timeout=10)
    assert changed.status_code == 200 and changed.json()["drop_fraction"] == 0.25
    assert emu.faults()["reject_data_names"] == ["x*"]
    for bad in ({"drop_fraction": 2}, {"processing_seconds": 1}, {"no_such": 1}, {"fail_first_attempts": "x"}):
        response = requests.put(control, headers=AUTH, json=bad, timeout=10)
        assert response.status_code == 400 and response.json()["code"] == 400, bad
    assert emu.faults()["drop_fraction"] == 0.25  # a refused change leaves everything as it was
    with pytest.raises(ValueError, match="unknown fault option"):
        emu.set_faults(hold=True)


def test_options_check_values() -> None:
    with pytest.raises(ValueError, match="drop_fraction"):
        EmulatorOptions(api_key="k", drop_fraction=1.5)
    with pytest.raises(ValueError, match="api_key"):
        EmulatorOptions(api_key="")
    assert EmulatorOptions(api_key="k", notify_retry_delays="1, 2").notify_retry_delays == (1.0, 2.0)


def test_stats_count_requests_by_route(emu: Emulator) -> None:
    job_id = submit_id(emu.url)
    requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    requests.get(f"{emu.url}/jobs/{job_id}/transcript", headers=AUTH, params={"format": "txt"}, timeout=10)
    requests.delete(f"{emu.url}/jobs/{job_id}", headers=AUTH, params={"force": "true"}, timeout=10)
    stats = requests.get(f"{emu.base_url}/_emulator/stats", headers=AUTH, timeout=10).json()
    assert stats["requests"] == {"POST /v2/jobs": 1, "GET /v2/jobs/{id}": 1, "GET /v2/jobs/{id}/transcript": 1,
                                 "DELETE /v2/jobs/{id}": 1}
    assert stats["jobs_created"] == 1 and stats["seed"] == 1


def test_post_config_as_plain_form_field_is_accepted(emu: Emulator) -> None:
    """speechmatics-batch sends ``config`` as a text part; speechmatics-python as a form field."""
    response = requests.post(f"{emu.url}/jobs", headers=AUTH, data={"config": json.dumps(job_config())},
                             files={"data_file": ("a.wav", wav_bytes(0.5), "audio/wav")}, timeout=10)
    assert response.status_code == 201


# --- create latency, create-then-fail, truncated and empty transcripts ---------------------------------


def listed_ids(emu: Emulator) -> list[str]:
    response = requests.get(f"{emu.url}/jobs", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def raw_transcript(emu: Emulator, job_id: str, fmt: str = "json-v2") -> requests.Response:
    return requests.get(f"{emu.url}/jobs/{job_id}/transcript", headers=AUTH, params={"format": fmt}, timeout=10)


def test_create_latency_applies_to_job_creation_only(make_emulator) -> None:
    emu = make_emulator(create_latency_ms=400)
    started = time.monotonic()
    job_id = submit_id(emu.url)
    assert time.monotonic() - started >= 0.4
    for url in (f"{emu.url}/jobs", f"{emu.url}/jobs/{job_id}", f"{emu.url}/usage"):
        started = time.monotonic()
        assert requests.get(url, headers=AUTH, timeout=10).status_code == 200
        assert time.monotonic() - started < 0.4, url
    emu.set_faults(create_latency_ms=0)
    started = time.monotonic()
    submit_id(emu.url)
    assert time.monotonic() - started < 0.4


def test_create_latency_client_times_out_but_the_job_is_created_later(make_emulator) -> None:
    emu = make_emulator(create_latency_ms=1500)
    files = {"data_file": ("late.wav", wav_bytes(0.5)), "config": (None, json.dumps(job_config()))}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{emu.url}/jobs", headers=AUTH, files=files, timeout=(5, 0.3))
    assert emu.stats()["jobs_created"] == 0 and listed_ids(emu) == []  # the upload was read, no job yet
    [job_id] = wait_for(lambda: listed_ids(emu), timeout=10, message="the job created after the latency")
    assert emu.job(job_id)["data_name"] == "late.wav" and emu.stats()["jobs_created"] == 1
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="the late job to finish")


def test_create_then_fail_creates_the_job_but_answers_503(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(create_then_fail_fraction=1.0)
    response = submit(emu.url, name="ghost.wav", notification_config=entries(receiver, "/hook"))
    assert response.status_code == 503 and response.json() == {
        "code": 503, "error": "Internal Server Error", "detail": "Service temporarily unavailable (injected fault)"}
    [job_id] = listed_ids(emu)
    answer = requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10)
    assert answer.status_code == 200 and answer.json()["job"]["data_name"] == "ghost.wav"
    [notification] = receiver.wait(1)  # it runs, finishes and notifies like any job
    assert notification.query == {"id": [job_id], "status": ["success"]}
    transcript = raw_transcript(emu, job_id)
    assert transcript.status_code == 200 and transcript.content == emu.transcript_bytes(job_id)
    stats = emu.stats()
    assert stats["injected_create_then_fail"] == 1 and stats["jobs_created"] == 1 and stats["injected_503"] == 0


def test_create_then_fail_off_by_default_and_seeded(make_emulator) -> None:
    emu = make_emulator(rate_limit_post_per_second=0)
    assert all(submit(emu.url, wav_bytes(0.2)).status_code == 201 for _ in range(5))
    assert emu.stats()["injected_create_then_fail"] == 0

    def pattern(seed: int) -> list[tuple[str, int]]:
        emu = make_emulator(seed=seed, create_then_fail_fraction=0.5, rate_limit_post_per_second=0)
        codes = [submit(emu.url, wav_bytes(0.2)).status_code for _ in range(12)]
        assert emu.stats()["injected_create_then_fail"] == codes.count(503) and len(listed_ids(emu)) == 12
        return list(zip(reversed(listed_ids(emu)), codes, strict=True))

    first, again, other = pattern(5), pattern(5), pattern(6)
    assert first == again and {code for _, code in first} == {201, 503}
    assert [code for _, code in first] != [code for _, code in other]


FORMATS = ("json-v2", "txt", "srt")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fault", ["truncate", "empty"])
def test_broken_transcript_is_a_complete_200_with_wrong_bytes(make_emulator, fault: str, fmt: str) -> None:
    emu = make_emulator(processing_seconds=0.05)
    job_id = submit_id(emu.url)
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="the job to finish")
    real = {name: raw_transcript(emu, job_id, name).content for name in FORMATS}  # fractions 0: the real bytes
    assert real["json-v2"] == emu.transcript_bytes(job_id) and all(real.values())
    content_type = raw_transcript(emu, job_id, fmt).headers["Content-Type"]
    details = requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10).json()
    emu.set_faults(**{f"{fault}_transcript_fraction": 1.0, "transcript_fault_formats": [fmt]})
    response = raw_transcript(emu, job_id, fmt)
    assert response.status_code == 200 and response.headers["Content-Type"] == content_type
    assert response.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in response.headers
    if fault == "truncate":
        assert response.content == real[fmt][: len(real[fmt]) // 3] and response.content
    else:
        assert response.content == b""
    if fmt == "json-v2" and fault == "truncate":
        with pytest.raises(ValueError):
            json.loads(response.content)
    for other in set(FORMATS) - {fmt}:  # the formats not named are served as usual
        again = raw_transcript(emu, job_id, other)
        assert again.status_code == 200 and again.content == real[other], other
    assert requests.get(f"{emu.url}/jobs/{job_id}", headers=AUTH, timeout=10).json() == details
    files = {"data_file": ("sync.wav", wav_bytes(2.0)), "config": (None, json.dumps(job_config()))}
    params = {"wait": 5, "format": fmt}
    sync = requests.post(f"{emu.url}/jobs", headers=AUTH, files=files, params=params, timeout=10).json()
    assert sync["status"] == "done" and sync[fmt]  # the ?wait= answer is not a download: never broken
    if fmt == "json-v2":
        assert sync[fmt] == json.loads(emu.transcript_bytes(sync["id"]))
    stats = emu.stats()
    assert stats["injected_truncated_transcript"] == (1 if fault == "truncate" else 0)
    assert stats["injected_empty_transcript"] == (1 if fault == "empty" else 0)


def test_transcript_faults_apply_to_every_format_by_default(make_emulator) -> None:
    emu = make_emulator(processing_seconds=0.05)
    assert emu.faults()["transcript_fault_formats"] == list(FORMATS)
    job_id = submit_id(emu.url)
    wait_for(lambda: emu.job(job_id)["status"] == "done", message="the job to finish")
    emu.set_faults(empty_transcript_fraction=1.0)
    assert all(raw_transcript(emu, job_id, fmt).content == b"" for fmt in FORMATS)
    assert emu.stats()["injected_empty_transcript"] == 3
    with pytest.raises(ValueError, match="unknown transcript format"):
        emu.set_faults(transcript_fault_formats=["json-v2", "vtt"])
    assert emu.faults()["transcript_fault_formats"] == list(FORMATS)  # a refused change changes nothing


def test_transcript_faults_are_seeded_per_job_format_and_read(make_emulator) -> None:
    def pattern(seed: int, also_srt: bool = False) -> list[str]:
        emu = make_emulator(seed=seed, processing_seconds=0.05, truncate_transcript_fraction=0.3,
                            empty_transcript_fraction=0.3, rate_limit_get_per_second=0)
        ids = [submit_id(emu.url, wav_bytes(2.0)) for _ in range(3)]  # long enough for srt cues
        wait_for(lambda: all(emu.job(job_id)["status"] == "done" for job_id in ids), message="3 jobs done")
        kinds, srt_kinds = [], []
        for job_id in ids:
            real = emu.transcript_bytes(job_id)
            real_srt = render_srt(json.loads(real)).encode()
            for _ in range(8):
                content = raw_transcript(emu, job_id).content
                kinds.append("ok" if content == real else "empty" if content == b"" else "truncated")
                if also_srt:
                    srt = raw_transcript(emu, job_id, "srt").content
                    srt_kinds.append("ok" if srt == real_srt else "empty" if srt == b"" else "truncated")
        stats = emu.stats()
        assert stats["injected_truncated_transcript"] == (kinds + srt_kinds).count("truncated")
        assert stats["injected_empty_transcript"] == (kinds + srt_kinds).count("empty")
        assert not also_srt or set(srt_kinds) == {"ok", "truncated", "empty"}
        return kinds

    first, again, other = pattern(7), pattern(7), pattern(8)
    assert first == again and set(first) == {"ok", "truncated", "empty"}
    assert first != other
    assert pattern(7, also_srt=True) == first  # reads of srt do not shift the json-v2 faults


ADDONS = {"translation_config": {"target_languages": ["de"]}, "summarization_config": {},
          "sentiment_analysis_config": {}, "topic_detection_config": {}, "auto_chapters_config": {}}


def test_addon_errors_leave_the_job_done_with_the_documented_metadata(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(processing_seconds=0.05, addon_error_fraction=1.0)
    hook = [{"url": receiver.url(), "contents": ["transcript"]}]
    failing = submit_id(emu.url, notification_config=hook, **ADDONS)
    plain = submit_id(emu.url)
    [request] = receiver.wait(1)
    assert request.query["status"] == ["success"] and request.body == emu.transcript_bytes(failing)
    wait_for(lambda: emu.job(plain)["status"] == "done", message="the job without add-ons")
    job = emu.job(failing)
    assert job["status"] == "done" and "errors" not in job  # add-on failures live in the transcript only
    metadata = raw_transcript(emu, failing).json()["metadata"]
    assert {key: [error["type"] for error in value] for key, value in metadata.items() if key.endswith("_errors")} == {
        "translation_errors": ["translation_failed"], "summarization_errors": ["summarization_failed"],
        "sentiment_analysis_errors": ["sentiment_analysis_failed"],
        "topic_detection_errors": ["topic_detection_failed"], "auto_chapters_errors": ["auto_chapters_failed"]}
    assert all(error["message"] for key, value in metadata.items() if key.endswith("_errors") for error in value)
    assert not [key for key in raw_transcript(emu, plain).json()["metadata"] if key.endswith("_errors")]
    assert emu.stats()["injected_addon_errors"] == 1


def test_addon_errors_only_for_the_addons_asked_for_and_seeded(make_emulator) -> None:
    def failed(seed: int) -> list[bool]:
        emu = make_emulator(seed=seed, processing_seconds=0.05, addon_error_fraction=0.5)
        ids = [submit_id(emu.url, wav_bytes(0.3), translation_config={"target_languages": ["fr"]}) for _ in range(8)]
        wait_for(lambda: all(emu.job(job_id)["status"] == "done" for job_id in ids), message="8 jobs done")
        metadata = [raw_transcript(emu, job_id).json()["metadata"] for job_id in ids]
        assert all(set(m) & {"summarization_errors", "auto_chapters_errors"} == set() for m in metadata)
        flags = ["translation_errors" in m for m in metadata]
        assert emu.stats()["injected_addon_errors"] == sum(flags)
        return flags

    first = failed(3)
    assert first == failed(3) and set(first) == {True, False}
