"""client.py --format srt,txt with TRANSCRIPTS_URL: the subtitles and the text stored as objects beside the
json-v2 in a real S3-compatible store (SeaweedFS), from the notification, by cronjob.py when the notification is
lost, and again by the repair sweep when an object is deleted. Each is written once (a valid object is kept,
one that is not what it claims is replaced), and a cut one is never published."""

from __future__ import annotations

import io

import pytest
from urllib3 import encode_multipart_formdata

from notification_flow.formats import check, words_of
from seaweed import SeaweedFS
from tests.integration.support import Stack, json_lines, wait_for
from tests.integration.test_formats import done_job, recovered_with_formats, rendered


def key(stack: Stack, job_id: str, fmt: str) -> tuple[str, str]:
    bucket, _, prefix = stack.storage["TRANSCRIPTS_URL"].removeprefix("s3://").partition("/")
    return bucket, f"{prefix}/{job_id}.{fmt}"


def object_of(stack: Stack, seaweedfs: SeaweedFS, job_id: str, fmt: str) -> bytes | None:
    bucket, name = key(stack, job_id, fmt)
    listed = seaweedfs.client().list_objects_v2(Bucket=bucket, Prefix=name).get("Contents") or []
    if not any(item["Key"] == name for item in listed):
        return None
    return seaweedfs.client().get_object(Bucket=bucket, Key=name)["Body"].read()


def put_object(stack: Stack, seaweedfs: SeaweedFS, job_id: str, fmt: str, body: bytes) -> None:
    bucket, name = key(stack, job_id, fmt)
    seaweedfs.client().put_object(Bucket=bucket, Key=name, Body=body)


def delete_object(stack: Stack, seaweedfs: SeaweedFS, job_id: str, fmt: str) -> None:
    bucket, name = key(stack, job_id, fmt)
    seaweedfs.client().delete_object(Bucket=bucket, Key=name)


def assert_formats_match(stack: Stack, seaweedfs: SeaweedFS, job_id: str) -> None:
    """Both objects there, byte for byte what Speechmatics renders, and consistent with the json-v2 object."""
    transcript = object_of(stack, seaweedfs, job_id, "json")
    assert transcript == stack.emulator.transcript_bytes(job_id)
    words = words_of(io.BytesIO(transcript))
    assert words, "the sample has words"
    for fmt in ("srt", "txt"):
        stored = object_of(stack, seaweedfs, job_id, fmt)
        assert stored == rendered(stack, job_id, fmt), fmt
        check(fmt, stored, words)


def notify_with_parts(stack: Stack, job_id: str, **parts: bytes) -> int:
    """A multipart notification like Speechmatics', its json-v2 uncut and each other part as given."""
    fields = {"transcript": ("transcript.json", stack.emulator.transcript_bytes(job_id), "application/json")}
    fields |= {f"transcript.{fmt}": (f"transcript.{fmt}", data, "text/plain") for fmt, data in parts.items()}
    body, content_type = encode_multipart_formdata(fields)
    return stack.notify(job_id, body=body, content_type=content_type).status_code


def test_the_notification_brings_srt_and_txt_objects_beside_the_json(s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    stack = s3_stack
    stack.start_server()
    assert stack.client("--format", "srt,txt").returncode == 0
    job_id = done_job(stack)["job_id"]
    wait_for(lambda: object_of(stack, seaweedfs, job_id, "txt") is not None, message="the txt object")
    wait_for(lambda: object_of(stack, seaweedfs, job_id, "srt") is not None, message="the srt object")
    assert_formats_match(stack, seaweedfs, job_id)
    assert not list(stack.transcripts.glob("*.srt")) + list(stack.transcripts.glob("*.txt"))  # only the spool


@pytest.mark.emulator(drop_fraction=1.0)
def test_cronjob_fetches_the_formats_of_a_lost_notification_into_the_bucket(s3_stack: Stack,
                                                                            seaweedfs: SeaweedFS) -> None:
    assert_formats_match(s3_stack, seaweedfs, recovered_with_formats(s3_stack))


@pytest.mark.emulator(truncate_transcript_fraction=0.5, transcript_fault_formats=("srt", "txt"))
def test_the_repair_sweep_restores_a_deleted_srt_object_and_never_publishes_a_cut_one(
        s3_stack: Stack, seaweedfs: SeaweedFS) -> None:
    stack = s3_stack
    stack.start_server()
    assert stack.client("--format", "srt,txt").returncode == 0
    job_id = done_job(stack)["job_id"]
    wait_for(lambda: object_of(stack, seaweedfs, job_id, "txt") is not None, message="the txt object")
    delete_object(stack, seaweedfs, job_id, "srt")
    refusals = []
    for _ in range(20):  # a cut download is refused (that pass exits 1) and fetched again by the next pass
        result = stack.cronjob("--all")
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        refusals += [line for line in result.stderr.splitlines() if "SubRip" in line or "lacks word" in line]
        srt = object_of(stack, seaweedfs, job_id, "srt")
        if srt is not None:
            assert srt == rendered(stack, job_id, "srt")  # whenever there is one, it is the whole
            break
    assert refusals, "the truncation fault should have cut at least one download"
    assert_formats_match(stack, seaweedfs, job_id)


@pytest.mark.emulator(drop_fraction=1.0)
def test_notified_objects_are_written_once_replaced_when_invalid_and_never_cut(s3_stack: Stack,
                                                                               seaweedfs: SeaweedFS) -> None:
    stack = s3_stack
    stack.start_server()
    assert stack.client("--format", "srt,txt").returncode == 0
    [job] = json_lines(stack.client("--list", "--json").stdout)
    job_id = job["job_id"]
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    srt, txt = rendered(stack, job_id, "srt"), rendered(stack, job_id, "txt")
    cut_srt = srt[: len(srt) // 2]  # a download cut short
    longer_txt = txt + b"\nstill every word, in order\n"  # valid, other bytes

    # already there: a cut srt (replaced, conditionally) and a valid txt (kept: written once)
    put_object(stack, seaweedfs, job_id, "srt", cut_srt)
    put_object(stack, seaweedfs, job_id, "txt", longer_txt)
    assert notify_with_parts(stack, job_id, srt=srt, txt=txt) == 200
    assert done_job(stack)["job_id"] == job_id
    assert object_of(stack, seaweedfs, job_id, "srt") == srt
    assert object_of(stack, seaweedfs, job_id, "txt") == longer_txt
    assert "replaced a stored object" in stack.server_log()

    # a notification whose parts are cut publishes neither; the next cronjob pass fetches what is missing
    delete_object(stack, seaweedfs, job_id, "srt")
    delete_object(stack, seaweedfs, job_id, "txt")
    assert notify_with_parts(stack, job_id, srt=cut_srt, txt=txt[: len(txt) // 2]) == 200
    assert object_of(stack, seaweedfs, job_id, "srt") is None
    assert object_of(stack, seaweedfs, job_id, "txt") is None
    log = stack.server_log()
    assert "lacks word" in log and "cronjob.py fetches it" in log, log
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stderr
    assert_formats_match(stack, seaweedfs, job_id)
