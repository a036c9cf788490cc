"""cronjob.py: recovers what notifications lost, within the API's limits, safely run twice at once."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

from tests import RUNTIME_PYTHON
from tests.integration.support import (
    ROOT,
    Stack,
    api_headers,
    create_job,
    free_port,
    submit_like_client,
    transcript_files,
    wait_for,
)


def lost_jobs(stack: Stack, count: int) -> list[str]:
    """`count` jobs done at the emulator whose notifications were all lost."""
    stack.emulator.set_faults(drop_fraction=1.0, rate_limit_post_per_second=0)
    job_ids = [submit_like_client(stack, {"contents": ["transcript"]})[1] for _ in range(count)]
    wait_for(lambda: all(stack.emulator.job(j)["status"] == "done" for j in job_ids), message="jobs to finish")
    return job_ids


def transcript_reads(stack: Stack) -> int:
    return sum(v for k, v in stack.emulator.stats()["requests"].items() if "transcript" in k)


def test_two_overlapping_passes_do_no_double_work(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 40)
    stack.emulator.set_faults(api_latency_ms=20)
    passes = [subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--all"], cwd=stack.tmp,
                               env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in passes]
    assert [p.returncode for p in passes] == [0, 0], outputs
    assert {stack.store().find(j).status for j in job_ids} == {"done"}
    assert len(transcript_files(stack.transcripts)) == 40
    assert transcript_reads(stack) == 40  # each transcript fetched once, by one of the two passes
    for job_id in job_ids:
        assert (stack.transcripts / f"{job_id}.json").read_bytes() == stack.emulator.transcript_bytes(job_id)


def test_statuses_come_from_list_pages_not_one_call_per_job(stack: Stack) -> None:
    lost_jobs(stack, 30)
    before = stack.emulator.stats()["requests"]
    assert stack.cronjob("--all").returncode == 0
    after = stack.emulator.stats()["requests"]
    reads = sum(after.values()) - sum(before.values())
    assert reads <= 30 * 1.1, after


@pytest.mark.paced
def test_rate_limits_and_throttling_are_respected(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 30)
    stack.emulator.set_faults(api_429_fraction=0.1, api_503_fraction=0.05)
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {stack.store().find(j).status for j in job_ids} == {"done"}
    stats = stack.emulator.stats()
    assert stats["max_gets_per_second"] <= 50 and stats["injected_429"] > 0


def test_summary_and_exit_code(stack: Stack) -> None:
    lost_jobs(stack, 2)
    result = stack.cronjob("--all")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines()[-1] == "checked 2, recovered 2, repaired 0, still running 0, failed 0"


@pytest.mark.emulator(processing_seconds=3600)
def test_running_jobs_stay_running_and_loop_repeats(stack: Stack) -> None:
    _, job_id = submit_like_client(stack, {"contents": ["transcript"]})
    result = stack.cronjob("--all")
    assert result.returncode == 0 and "still running 1" in result.stdout
    assert stack.store().find(job_id).status == "running"
    stack.emulator.finish(job_id)
    looping = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--all", "--loop", "0.2"], cwd=stack.tmp,
                               env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: stack.store().find(job_id).status == "done", message="a later pass to recover the job")
    finally:
        looping.terminate()
        looping.wait(timeout=10)


def test_one_failing_job_never_aborts_the_pass(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 3)
    (stack.transcripts / ".incoming").mkdir(parents=True, exist_ok=True)
    # The second job's transcript cannot be stored: a directory already holds its name.
    (stack.transcripts / f"{job_ids[1]}.json").mkdir()
    result = stack.cronjob("--all")
    assert result.returncode == 1
    assert "recovered 2" in result.stdout and "failed 1" in result.stdout
    assert [stack.store().find(j).status for j in job_ids] == ["done", "running", "done"]


def test_a_young_job_unknown_to_the_api_is_a_failure_not_an_expiry(stack: Stack) -> None:
    store = stack.store()
    store.add_submission("f" * 32, "elsewhere.wav")
    store.record_created("f" * 32, "abcdefghij")  # e.g. created in another region than we ask
    result = stack.cronjob("--all")
    assert result.returncode == 1 and "failed 1" in result.stdout
    assert store.find("abcdefghij").status == "running"


def test_api_outage_fails_the_pass_cleanly_and_the_next_pass_recovers(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 3)
    stack.emulator.set_faults(api_503_fraction=1.0)
    outage = stack.cronjob("--all", SPEECHMATICS_TIMEOUT="2")
    assert outage.returncode == 75 and "Traceback" not in outage.stderr  # unavailable: try again
    assert outage.stdout.strip().splitlines()[-1].startswith("checked 0, recovered 0")
    stack.emulator.set_faults(api_503_fraction=0.0)
    assert stack.cronjob("--all").returncode == 0
    assert {stack.store().find(j).status for j in job_ids} == {"done"}


def test_a_lost_transcript_that_can_no_longer_be_fetched_is_recorded_once(stack: Stack) -> None:
    [job_id] = lost_jobs(stack, 1)
    assert stack.cronjob("--all").returncode == 0
    (stack.transcripts / f"{job_id}.json").unlink()
    stack.emulator.expire(job_id)
    first = stack.cronjob("--all")
    assert first.returncode == 1 and "failed 1" in first.stdout
    job = stack.store().find(job_id)
    assert job.status == "done" and job.transcript is None and "no longer" in job.error
    assert stack.cronjob("--all").returncode == 0  # known and recorded: not a failure on every pass


def test_a_submitting_row_is_found_however_many_jobs_came_after_it(stack: Stack) -> None:
    store = stack.store()
    store.add_submission("e" * 32, "example.wav")
    job_id = create_job(stack, "e" * 32)  # the client died before recording this id...
    stack.emulator.set_faults(rate_limit_post_per_second=0, drop_fraction=1.0)
    for _ in range(230):  # ...and the account went on creating jobs
        create_job(stack, "someone-else")
    assert stack.cronjob("--all").returncode in (0, 1)
    assert store.find_by_reference("e" * 32).job_id == job_id


def scrape(stack: Stack) -> dict[str, float]:
    """The server's /metrics as `name{labels}` -> value."""
    from tests.integration.test_ops import scrape as scrape_metrics

    return scrape_metrics(stack)


def test_one_unreadable_transcript_costs_one_check_not_the_pass(stack: Stack) -> None:
    """A file the sweep cannot even stat (a symlink loop: ELOOP) is one failed check, counted and retried; the
    other repairs and the clean-up of leftovers still happen, and the pass is recorded complete."""
    broken, lost, fine = lost_jobs(stack, 3)
    assert stack.cronjob("--all").returncode == 0
    loop = stack.transcripts / f"{broken}.json"
    loop.unlink()
    loop.symlink_to(loop.name)  # stat: too many levels of symbolic links
    (stack.transcripts / f"{lost}.json").unlink()
    leftover = stack.transcripts / ".incoming" / "killed-worker.part"
    leftover.write_bytes(b"half a body")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    result = stack.cronjob("--all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "checked 0, recovered 0, repaired 1, still running 0, failed 1"
    assert (stack.transcripts / f"{lost}.json").read_bytes() == stack.emulator.transcript_bytes(lost)
    assert any(broken in line for line in result.stderr.splitlines())
    assert not leftover.exists()
    stack.start_server(workers=1)
    found = scrape(stack)
    assert found["transcribe_reconciler_last_pass_complete"] == 1
    assert found['transcribe_reconciler_last_pass_jobs{result="failed"}'] == 1
    loop.unlink()  # mended: the next pass repairs it too, since a failed check is due again at once
    again = stack.cronjob("--all")
    assert again.returncode == 0 and "repaired 1" in again.stdout, again.stdout + again.stderr
    assert stack.store().find(fine).status == "done"


def test_a_foreign_job_of_any_shape_never_stops_a_pass(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 3)
    config = {"type": "transcription", "transcription_config": {"language": "en"}, "tracking": {"reference": {"a": 1}}}
    requests.post(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=30, data={"config": json.dumps(config)},
                  files={"data_file": ("x.wav", (ROOT / "example.wav").read_bytes())}).raise_for_status()
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {stack.store().find(j).status for j in job_ids} == {"done"}


@pytest.mark.parametrize("broken", ["wrong API key", "unreachable API"])
def test_a_pass_that_cannot_read_the_api_fails_even_with_nothing_open(stack: Stack, broken: str) -> None:
    setting = ({"SPEECHMATICS_API_KEY": "not-the-key"} if broken == "wrong API key"
               else {"SPEECHMATICS_BATCH_URL": f"http://127.0.0.1:{free_port()}/v2"})
    result = stack.cronjob(**setting)
    assert result.returncode not in (0, None), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "pass cut short" in line]
    assert len(problems) == 1, result.stderr
    assert ("API key" if broken == "wrong API key" else "connect") in problems[0]
    stack.start_server(workers=1)
    assert scrape(stack)["transcribe_reconciler_last_pass_complete"] == 0


def test_repairs_are_counted_as_repairs_and_every_line_names_its_job(stack: Stack) -> None:
    job_ids = lost_jobs(stack, 2)
    assert stack.cronjob("--all").returncode == 0
    for job_id in job_ids:
        (stack.transcripts / f"{job_id}.json").unlink()
    repaired = stack.cronjob("--all")
    assert repaired.stdout.strip().splitlines()[-1] == "checked 0, recovered 0, repaired 2, still running 0, failed 0"
    store = stack.store()
    store.add_submission("d" * 32, "example.wav")
    adopted = create_job(stack, "d" * 32)  # the client died before recording this id
    wait_for(lambda: stack.emulator.job(adopted)["status"] == "done", message="the job to finish")
    result = stack.cronjob("--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"job {adopted}: recovered" in result.stderr
    assert "job -" not in result.stderr


def test_a_zeroed_transcript_of_the_right_size_is_repaired_by_the_next_pass(stack: Stack) -> None:
    """A file damaged in place (all NUL, its size unchanged) is no transcript: the sweep fetches it again."""
    (damaged,) = lost_jobs(stack, 1)
    assert stack.cronjob("--all").returncode == 0
    path = stack.transcripts / f"{damaged}.json"
    path.write_bytes(b"\x00" * path.stat().st_size)
    result = stack.cronjob("--all")
    assert result.stdout.strip().splitlines()[-1] == "checked 0, recovered 0, repaired 1, still running 0, failed 0"
    assert path.read_bytes() == stack.emulator.transcript_bytes(damaged)
