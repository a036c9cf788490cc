"""client.py --format srt,txt: the subtitles and the text stored beside the json-v2, from the notification, by
cronjob.py when the notification is lost, and again by the repair sweep when a file is deleted; never a file
that is not what it claims (a download cut short)."""

from __future__ import annotations

import json

import pytest

from emulator.transcripts import render_srt, render_txt
from notification_flow.formats import check, srt_text, words_of
from tests.integration.support import Stack, json_lines, wait_for


def done_job(stack: Stack) -> dict:
    def done() -> dict | None:
        jobs = json_lines(stack.client("--list", "--json").stdout)
        return jobs[0] if jobs and jobs[0]["status"] == "done" else None
    return wait_for(done, timeout=60, message="the job to be done")


def rendered(stack: Stack, job_id: str, fmt: str) -> bytes:
    """What Speechmatics serves for the job in `fmt`, uncut."""
    document = json.loads(stack.emulator.transcript_bytes(job_id))
    return (render_srt(document) if fmt == "srt" else render_txt(document)).encode()


def assert_formats_match(stack: Stack, job_id: str) -> None:
    """Both files there, byte for byte what Speechmatics renders, and consistent with the json-v2."""
    with (stack.transcripts / f"{job_id}.json").open("rb") as transcript:
        words = words_of(transcript)
    assert words, "the sample has words"
    for fmt in ("srt", "txt"):
        stored = (stack.transcripts / f"{job_id}.{fmt}").read_bytes()
        assert stored == rendered(stack, job_id, fmt)
        check(fmt, stored, words)


def test_the_notification_brings_srt_and_txt_beside_the_json(served: Stack) -> None:
    overrides = served.tmp / "srt.json"
    overrides.write_text(json.dumps({"output_config": {"srt_overrides": {"max_line_length": 20, "max_lines": 1}}}))
    assert served.client("--format", "srt,txt", "--config-file", str(overrides)).returncode == 0
    job = done_job(served)
    config = served.emulator.job(job["job_id"])["config"]
    assert config["notification_config"][-1]["contents"] == ["transcript", "transcript.srt", "transcript.txt"]
    assert config["output_config"] == {"srt_overrides": {"max_line_length": 20, "max_lines": 1}}
    wait_for(lambda: (served.transcripts / f"{job['job_id']}.txt").exists(), message="the txt")
    assert_formats_match(served, job["job_id"])
    cues = srt_text((served.transcripts / f"{job['job_id']}.srt").read_text()).splitlines()
    assert cues and all(len(line) <= 20 for line in cues)  # the overrides reached Speechmatics


def recovered_with_formats(stack: Stack) -> str:
    """A job submitted with --format srt,txt whose notification is lost (the emulator drops it), recovered by
    cronjob.py: its id."""
    assert stack.client("--format", "srt,txt").returncode == 0
    [job] = json_lines(stack.client("--list", "--json").stdout)
    wait_for(lambda: stack.emulator.job(job["job_id"])["status"] == "done", message="the job to finish")
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stderr
    assert done_job(stack)["job_id"] == job["job_id"]
    return str(job["job_id"])


@pytest.mark.emulator(drop_fraction=1.0)
def test_cronjob_fetches_the_formats_of_a_job_whose_notification_was_lost(stack: Stack) -> None:
    assert_formats_match(stack, recovered_with_formats(stack))


@pytest.mark.emulator(truncate_transcript_fraction=0.5, transcript_fault_formats=("srt", "txt"))
def test_the_repair_sweep_fetches_a_deleted_srt_again_and_never_keeps_a_cut_one(served: Stack) -> None:
    assert served.client("--format", "srt,txt").returncode == 0
    job_id = done_job(served)["job_id"]
    wait_for(lambda: (served.transcripts / f"{job_id}.txt").exists(), message="the txt")
    (served.transcripts / f"{job_id}.srt").unlink()
    refusals = []
    for _ in range(20):  # a cut download is refused (that pass exits 1) and fetched again by the next pass
        result = served.cronjob("--all")
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        refusals += [line for line in result.stderr.splitlines() if "SubRip" in line or "lacks word" in line]
        if (served.transcripts / f"{job_id}.srt").exists():
            break
    assert refusals, "the truncation fault should have cut at least one download"
    srt = (served.transcripts / f"{job_id}.srt").read_bytes()
    assert srt == rendered(served, job_id, "srt")


def test_an_unknown_format_is_refused_before_anything_is_written(stack: Stack) -> None:
    result = stack.client("--format", "srt,vtt")
    assert result.returncode == 2 and "vtt" in result.stderr
    assert stack.client("--list", "--json").returncode == 2  # no database was even made


@pytest.mark.emulator(processing_seconds=3)
def test_a_format_storage_cannot_take_leaves_the_notification_answered_for_its_stored_json(served: Stack) -> None:
    result = served.client("--format", "srt,txt")
    assert result.returncode == 0
    job_id = result.stdout.split("job ")[1].split()[0]
    (served.transcripts / f"{job_id}.srt").mkdir()  # in the way of the srt, before the job finishes
    assert done_job(served)["job_id"] == job_id  # the notification stored the json-v2 and made the job done
    wait_for(lambda: (served.transcripts / f"{job_id}.txt").exists(), message="the txt")
    assert (served.transcripts / f"{job_id}.srt").is_dir()
