"""Notifications as documented, checked at a real receiver: URL, headers, every body shape, retries."""

from __future__ import annotations

import itertools
import json

import pytest
import requests

from emulator import Emulator
from tests.emulator.support import AUTH, Receiver, submit_id, wait_for, wav_bytes


def notify(emu: Emulator, receiver: Receiver, audio: bytes | None = None, path: str = "/hook", **entry) -> str:
    entry.setdefault("url", receiver.url(path))
    return submit_id(emu.url, audio, notification_config=[entry])


def test_callback_url_method_and_headers(emu: Emulator, receiver: Receiver) -> None:
    job_id = notify(emu, receiver, url=receiver.url("/hook?tenant=t1&x=a%20b"), method="put", contents=[],
                    auth_headers=["Authorization: Bearer abc:def", "X-Extra:  spaced value "])
    [request] = receiver.wait(1)
    assert request.method == "PUT"
    assert request.query == {"tenant": ["t1"], "x": ["a b"], "id": [job_id], "status": ["success"]}
    assert request.headers["User-Agent"] == "Speechmatics-API/2.0"
    assert request.headers["Authorization"] == "Bearer abc:def"  # split on the first colon only
    assert request.headers["X-Extra"] == "spaced value"
    assert request.body == b"" and "Content-Type" not in request.headers


@pytest.mark.parametrize(
    ("contents", "content_type"),
    [(["transcript"], "application/json"), (["transcript.json-v2"], "application/json"),
     (["transcript.txt"], "text/plain"), (["transcript.srt"], "text/plain")],
)
def test_single_transcript_item_is_the_body(emu: Emulator, receiver: Receiver, contents, content_type) -> None:
    job_id = notify(emu, receiver, contents=contents)
    [request] = receiver.wait(1)
    assert request.method == "POST" and request.content_type.startswith(content_type)
    fmt = {"transcript": "json-v2", "transcript.json-v2": "json-v2"}.get(contents[0], contents[0][11:])
    served = emu.service.jobs.read(job_id, lambda job: job.transcript)
    if fmt == "json-v2":
        assert request.body == emu.transcript_bytes(job_id)
    else:
        from emulator.transcripts import render_srt, render_txt

        assert request.body.decode() == (render_txt if fmt == "txt" else render_srt)(served)


def test_jobinfo_alone_is_json(emu: Emulator, receiver: Receiver) -> None:
    job_id = notify(emu, receiver, contents=["jobinfo"])
    [request] = receiver.wait(1)
    assert request.content_type == "application/json"
    job = emu.job(job_id)
    assert request.json() == {"id": job_id, "created_at": job["created_at"], "data_name": "clip.wav",
                              "duration": job["duration"]}


def test_two_items_are_named_multipart_parts(emu: Emulator, receiver: Receiver) -> None:
    entry = {"url": receiver.url(), "contents": ["jobinfo", "transcript.txt"]}
    job_id = submit_id(emu.url, notification_config=[entry], tracking={"reference": "r-9"})
    [request] = receiver.wait(1)
    assert request.content_type.startswith("multipart/form-data")
    parts = request.parts()
    assert set(parts) == {"jobinfo", "transcript.txt"}
    filename, part_type, payload = parts["jobinfo"]
    assert filename and part_type == "application/json"
    assert json.loads(payload)["tracking"] == {"reference": "r-9"} and json.loads(payload)["id"] == job_id
    assert parts["transcript.txt"][1] == "text/plain" and parts["transcript.txt"][2].endswith(b"\n")


def test_json_srt_and_txt_in_one_multipart_notification_match_the_downloads(emu: Emulator, receiver: Receiver) -> None:
    """One notification carrying every format: each part is byte for byte what the API serves."""
    contents = ["jobinfo", "transcript", "transcript.srt", "transcript.txt"]
    job_id = notify(emu, receiver, audio=wav_bytes(3.0, tone=5), contents=contents)
    [request] = receiver.wait(1)
    assert request.query["status"] == ["success"] and request.content_type.startswith("multipart/form-data")
    parts = request.parts()
    assert list(parts) == contents  # in the order asked for, one part each
    assert parts["transcript"] == ("transcript.json", "application/json", emu.transcript_bytes(job_id))
    for fmt in ("srt", "txt"):
        filename, part_type, payload = parts[f"transcript.{fmt}"]
        served = requests.get(f"{emu.url}/jobs/{job_id}/transcript", headers=AUTH, params={"format": fmt},
                              timeout=10)
        assert (filename, part_type) == (f"transcript.{fmt}", "text/plain") and payload == served.content
        assert payload.strip()
    assert parts["transcript.srt"][2].startswith(b"1\n00:00:")


def test_data_item_is_multipart_with_the_original_media(emu: Emulator, receiver: Receiver) -> None:
    audio = wav_bytes(1.5, tone=77)
    notify(emu, receiver, audio=audio, contents=["data"])
    [request] = receiver.wait(1)
    assert request.content_type.startswith("multipart/form-data")
    assert int(request.headers["Content-Length"]) == len(request.body)
    assert request.parts()["data"] == ("clip.wav", "application/octet-stream", audio)


def test_without_contents_the_transcript_is_the_data_file_part(emu: Emulator, receiver: Receiver) -> None:
    job_id = notify(emu, receiver)
    [request] = receiver.wait(1)
    filename, part_type, payload = request.parts()["data_file"]
    assert filename and part_type == "application/json" and payload == emu.transcript_bytes(job_id)


def test_failed_job_sends_only_what_exists(emu: Emulator, receiver: Receiver) -> None:
    entries = [{"url": receiver.url("/one"), "contents": ["jobinfo", "transcript", "data"]},
               {"url": receiver.url("/two"), "contents": ["transcript"]},
               {"url": receiver.url("/three")}]
    job_id = submit_id(emu.url, b"garbage bytes, not audio", name="x.bin", notification_config=entries)
    one, two, three = (receiver.wait(1, path)[0] for path in ("/one", "/two", "/three"))
    assert all(r.query["status"] == ["error"] and r.query["id"] == [job_id] for r in (one, two, three))
    assert set(one.parts()) == {"jobinfo", "data"}  # the transcript is left out, the uploaded media exists
    assert two.body == b"" and two.content_type == "application/json"
    boundary = three.content_type.split("boundary=")[1]
    assert three.body == f"--{boundary}--\r\n".encode()  # multipart with no parts (what Go's writer sends)


def test_trim_error_for_audio_without_samples(emu: Emulator, receiver: Receiver) -> None:
    job_id = notify(emu, receiver, audio=wav_bytes(0), contents=["jobinfo"])
    [request] = receiver.wait(1)
    assert request.query["status"] == ["trim_error"] and emu.job(job_id)["status"] == "rejected"


def test_three_callbacks_go_out_in_parallel(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(notify_timeout=5.0)
    receiver.hang = {"/a": 1.0, "/b": 1.0, "/c": 1.0}
    entries = [{"url": receiver.url(p), "contents": []} for p in ("/a", "/b", "/c")]
    submit_id(emu.url, notification_config=entries)
    got = receiver.wait(3, timeout=5)
    arrivals = sorted(r.at for r in got)
    assert arrivals[-1] - arrivals[0] < 0.8  # all three started before the first one was answered


def test_failures_are_retried_and_recorded_in_job_errors(emu: Emulator, receiver: Receiver) -> None:
    receiver.answers["/hook"] = [500, 503, 200]
    job_id = notify(emu, receiver, contents=[])
    receiver.wait(3)
    wait_for(lambda: any(d["outcome"] == 200 for d in emu.deliveries()), message="delivery")
    messages = [error["message"] for error in emu.job(job_id)["errors"]]
    assert messages == [
        "Error in sending notification: unable to send notification: Response status: 500, retrying",
        "Error in sending notification: unable to send notification: Response status: 503, retrying",
    ]
    assert emu.job(job_id)["status"] == "done"
    attempts = [(d["attempt"], d["outcome"]) for d in emu.deliveries()]
    assert attempts == [(1, 500), (2, 503), (3, 200)]


def test_retries_follow_the_backoff_schedule_and_then_give_up(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(notify_retry_delays=(0.2, 0.4, 0.6))
    receiver.answers["/hook"] = [500]
    job_id = notify(emu, receiver, contents=[])
    got = receiver.wait(4, timeout=5)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got)]
    for gap, delay in zip(gaps, (0.2, 0.4, 0.6), strict=True):
        assert delay - 0.02 <= gap < delay + 0.5, gaps
    errors = wait_for(lambda: (e := emu.job(job_id).get("errors", [])) and len(e) == 5 and e, message="errors")
    assert errors[-1]["message"] == "Sending notification failed"
    assert errors[-2]["message"] == "unable to send notification: unable to send notification: Response status: 500"
    assert all(e["message"].endswith(", retrying") for e in errors[:3])
    assert emu.job(job_id)["status"] == "done"
    assert len(receiver.got()) == 4


def test_refused_connection_and_timeout_count_as_failures(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(notify_timeout=0.3, notify_retry_delays=(0.05,))
    receiver.hang["/slow"] = 5
    entries = [{"url": "http://127.0.0.1:9/closed", "contents": []}, {"url": receiver.url("/slow"), "contents": []}]
    job_id = submit_id(emu.url, notification_config=entries)
    wait_for(lambda: len(emu.deliveries()) == 4, message="two attempts each")
    outcomes = {(d["url"], d["attempt"]): d["outcome"] for d in emu.deliveries()}
    assert outcomes[("http://127.0.0.1:9/closed", 1)] == "error: connect: connection refused"
    assert outcomes[(receiver.url("/slow"), 2)].startswith("error: context deadline exceeded")
    errors = wait_for(lambda: len(emu.job(job_id).get("errors", [])) == 6 and emu.job(job_id)["errors"])
    assert any('HTTPError: Post "http://127.0.0.1:9/closed?id=' in e["message"] for e in errors)
