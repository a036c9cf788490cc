"""``fetch_data`` jobs: the download as documented (headers, URL untouched), its retries and its failures."""

from __future__ import annotations

import itertools

from emulator import Emulator
from tests.emulator.support import Receiver, submit_id, wait_for, wav_bytes

SIGNED = "/media/clip.wav?X-Amz-Signature=s3cr3t&X-Amz-Expires=600"


def fetch_job(emu: Emulator, receiver: Receiver, url: str, **fetch) -> str:
    """A fetch_data job that notifies ``/hook`` with an empty body when it ends."""
    return submit_id(emu.url, fetch_data={"url": url, **fetch},
                     notification_config=[{"url": receiver.url(), "contents": []}])


def finished(emu: Emulator, job_id: str) -> dict:
    return wait_for(lambda: (job := emu.job(job_id))["status"] != "running" and job, message="the job to end")


def test_a_failing_fetch_is_retried_then_rejected_as_fetch_error(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fetch_retry_delays=(0.1, 0.2, 0.3))
    receiver.answers["/media/clip.wav"] = [404]
    job_id = fetch_job(emu, receiver, receiver.url(SIGNED), auth_headers=["Authorization: Bearer fetch-token"])
    [hook] = receiver.wait(1, "/hook")
    assert hook.query["status"] == ["fetch_error"] and hook.query["id"] == [job_id]
    fetches = receiver.got("/media/clip.wav")
    assert len(fetches) == 4  # the first attempt and one per delay, all before the job ended
    for fetched in fetches:  # every attempt is the same request, signature and header included
        assert fetched.method == "GET"
        assert fetched.query == {"X-Amz-Signature": ["s3cr3t"], "X-Amz-Expires": ["600"]}
        assert fetched.headers["Authorization"] == "Bearer fetch-token"
        assert fetched.headers["User-Agent"] == "Speechmatics-API/2.0"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(fetches)]
    assert all(gap >= delay - 0.02 for gap, delay in zip(gaps, (0.1, 0.2, 0.3), strict=True)), gaps
    job = emu.job(job_id)
    assert job["status"] == "rejected" and job["data_name"] == "" and job["duration"] == 0
    assert [error["message"] for error in job["errors"]] == ["Audio fetch error, http status 404"] * 4
    assert hook.at >= fetches[-1].at


def test_a_fetch_that_succeeds_on_a_retry_gives_a_done_job(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fetch_retry_delays=(0.05, 0.05, 0.05))
    receiver.answers["/media/a.wav"] = [503, 500, 200]
    receiver.bodies["/media/a.wav"] = wav_bytes(4.2)
    job_id = fetch_job(emu, receiver, receiver.url("/media/a.wav"))
    [hook] = receiver.wait(1, "/hook")
    assert hook.query["status"] == ["success"] and len(receiver.got("/media/a.wav")) == 3
    job = emu.job(job_id)
    assert job["status"] == "done" and job["duration"] == 4 and job["data_name"] == ""
    assert [error["message"] for error in job["errors"]] == [
        "Audio fetch error, http status 503", "Audio fetch error, http status 500"]


def test_failed_attempts_show_while_the_job_still_runs(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fetch_retry_delays=(3600,))
    receiver.answers["/media/a.wav"] = [404]
    job_id = fetch_job(emu, receiver, receiver.url("/media/a.wav"))
    job = wait_for(lambda: (j := emu.job(job_id)).get("errors") and j, message="the first failed attempt")
    assert job["status"] == "running" and len(job["errors"]) == 1


def test_a_job_deleted_between_attempts_is_not_fetched_again(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(fetch_retry_delays=(0.3,), processing_seconds=3600)
    receiver.answers["/media/a.wav"] = receiver.answers["/media/b.wav"] = [404]
    first = fetch_job(emu, receiver, receiver.url("/media/a.wav"))
    wait_for(lambda: emu.job(first).get("errors"), message="the first failed attempt")
    emu.service.delete(first, force=True)
    second = fetch_job(emu, receiver, receiver.url("/media/b.wav"))
    # The second job's retry is due after the first's, so once it has run the first's has too.
    wait_for(lambda: len(emu.job(second).get("errors", [])) == 2, message="the second job's retry")
    assert len(receiver.got("/media/a.wav")) == 1
    job = emu.job(first)
    assert job["status"] == "deleted" and len(job["errors"]) == 1


def test_a_file_over_the_size_cap_is_not_fetched_again(make_emulator, receiver: Receiver) -> None:
    emu = make_emulator(max_upload_bytes=1000)
    receiver.bodies["/media/big.wav"] = wav_bytes(2.0)
    job_id = fetch_job(emu, receiver, receiver.url("/media/big.wav"))
    receiver.wait(1, "/hook")
    assert len(receiver.got("/media/big.wav")) == 1
    assert [e["message"] for e in finished(emu, job_id)["errors"]] == ["Audio fetch error, file exceeds 1000 bytes"]


def test_network_failures_name_the_url_as_the_services_go_client_does(make_emulator, receiver: Receiver) -> None:
    """The reason carries the URL with its query string, so a client storing reasons must redact them."""
    emu = make_emulator(fetch_retry_delays=(0.05,), fetch_timeout=0.3)
    receiver.hang["/media/slow.wav"] = 5
    refused = fetch_job(emu, receiver, "http://127.0.0.1:9/a.wav?sig=s3cr3t")
    slow = fetch_job(emu, receiver, receiver.url("/media/slow.wav?sig=s3cr3t"))
    refused_errors = [e["message"] for e in finished(emu, refused)["errors"]]
    assert refused_errors == ['Audio fetch error: Get "http://127.0.0.1:9/a.wav?sig=s3cr3t": '
                              "connect: connection refused"] * 2
    slow_errors = [e["message"] for e in finished(emu, slow)["errors"]]
    assert len(slow_errors) == 2 and len(receiver.got("/media/slow.wav")) == 2
    assert all(e.startswith(f'Audio fetch error: Get "{receiver.url("/media/slow.wav?sig=s3cr3t")}": '
                            "context deadline exceeded") for e in slow_errors)
