"""Routine work costs in proportion to the work, not to the history kept: query plans, `--list`, and the
repair sweep's guarantee on a large history, all in process."""

from __future__ import annotations

import argparse
import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from notification_flow.jobs import JobStore
from notification_flow.lifecycle import ReconcileOutcome, State
from notification_flow.listing import add_list_arguments, show_jobs
from notification_flow.reconcile import ReconcilePolicy, Reconciler
from notification_flow.transcripts import TranscriptFiles
from tests import query_plans as tests_query_plans
from tests.query_plans import full_scans, seed
from tests.unit.test_reconcile import StubAPI, remote_job, transcript_for


def test_every_routine_query_on_sqlite_reads_an_index_range_not_the_table(fresh_store: JobStore) -> None:
    seed(fresh_store, 500)
    assert full_scans(fresh_store) == []


def test_the_plan_check_catches_a_full_scan(fresh_store: JobStore) -> None:
    """The check can fail: without the new indexes, the repair slice and `--list` read the whole table."""
    with fresh_store.database.transaction() as tx:
        for index in ("jobs_by_status_created_file", "jobs_by_created"):
            tx.execute(f"DROP INDEX {index}")
    assert len(full_scans(fresh_store)) >= 3


def list_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_list_arguments(parser)
    return parser.parse_args(["--list", *argv])


def listed(store: JobStore, *argv: str) -> tuple[list[str], str]:
    out = io.StringIO()
    show_jobs(store, list_args(*argv), out)
    return out.getvalue().splitlines(), out.getvalue()


def history(store: JobStore, count: int, spacing: float = 60.0) -> None:
    """`count` jobs, one every `spacing` seconds back from now, every tenth `rejected`, the rest `done`."""
    with store.database.transaction() as tx:
        now = tx.now()
        for number in range(count):
            status = State.REJECTED if number % 10 == 0 else State.DONE
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, transcript, created_at, updated_at) "
                       "VALUES ($1, $2, 'a.wav', $3, $4, $5, $5)", f"{number:032d}", f"hist{number:08d}", status,
                       f"hist{number:08d}.json", now - number * spacing)


def test_list_shows_the_newest_first_and_says_when_it_left_some_out(fresh_store: JobStore) -> None:
    history(fresh_store, 120)
    lines, _ = listed(fresh_store)
    assert lines[0].startswith("job_id") and len(lines) == 1 + 50 + 1
    assert [line.split()[0] for line in lines[1:4]] == ["hist00000000", "hist00000001", "hist00000002"]
    assert lines[-1].startswith("more jobs not shown")
    everything, _ = listed(fresh_store, "--limit", "0")
    assert len(everything) == 1 + 120 and "more" not in everything[-1]
    exact, _ = listed(fresh_store, "--limit", "120")
    assert len(exact) == 1 + 120 and "more" not in exact[-1]  # limit+1 read, and there was no 121st


def test_list_filters_by_status_and_since(fresh_store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    history(fresh_store, 120)
    lines, _ = listed(fresh_store, "--status", "rejected", "--since", "30m", "--json")
    jobs = [json.loads(line) for line in lines]
    assert [job["job_id"] for job in jobs] == ["hist00000000", "hist00000010", "hist00000020"]
    assert {job["status"] for job in jobs} == {"rejected"} and capsys.readouterr().err == ""
    lines, _ = listed(fresh_store, "--json", "--limit", "2")
    assert len(lines) == 2 and "more jobs not shown" in capsys.readouterr().err  # stdout stays JSON lines
    assert listed(fresh_store, "--since", "2099-01-01")[0][1:] == []


@pytest.mark.parametrize("since", ["yesterday", "5 minutes", "-2h", "12x"])
def test_list_rejects_a_since_it_cannot_read(since: str) -> None:
    with pytest.raises(SystemExit):
        list_args("--since", since)


# -- the repair sweep -----------------------------------------------------------------------------------------
JOBS = 20_000
PASS_SECONDS = 300  # cronjob.py every five minutes, as the README suggests
DAY = 86400
WEEK = 7 * DAY


def seeded_history(store: JobStore, transcripts: TranscriptFiles, count: int = JOBS,
                   span: float = WEEK - 3600) -> list[str]:
    """`count` done jobs evenly over the last `span` seconds (by default the retention window), newest first,
    their files hard links of one."""
    original = transcripts.directory / "original.json"
    original.write_bytes(transcript_for("hist00000000"))
    ids = [f"hist{number:08d}" for number in range(count)]
    with store.database.transaction() as tx:
        now = tx.now()
        for number, job_id in enumerate(ids):
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, transcript, created_at, updated_at) "
                       "VALUES ($1, $2, 'a.wav', 'done', $3, $4, $4)", f"{number:032d}", job_id,
                       str(transcripts.path_for(job_id)), now - 60 - number * span / count)
            os.link(original, transcripts.path_for(job_id))
    return ids


def one_pass_later(store: JobStore, seconds: float) -> None:
    """Time passing between passes, by the database's clock: the last pass, and the start of the sweep, are
    made to look `seconds` older (the jobs' ages stay: the window does not slide in these tests)."""
    with store.database.transaction() as tx:
        tx.execute("UPDATE reconciler_state SET pass_at = pass_at - $1, started_at = started_at - $1", seconds)


class CountingFiles(TranscriptFiles):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.checks = 0

    def exists(self, job_id: str) -> bool:
        self.checks += 1
        return super().exists(job_id)


@pytest.mark.parametrize("span", [WEEK - 3600, DAY / 4], ids=["a-full-week", "a-young-deployment's-6-hours"])
def test_a_file_deleted_from_a_large_history_is_restored_within_a_day_of_passes(
        fresh_store: JobStore, tmp_path: Path, span: float) -> None:
    transcripts = CountingFiles(tmp_path / "history")
    transcripts.ensure_directories()
    ids = seeded_history(fresh_store, transcripts, span=span)
    policy = ReconcilePolicy(grace_seconds=0, concurrency=1, sweep_floor=10)  # the time rule, not the floor
    api = StubAPI([remote_job(job_id) for job_id in ids[:1]])
    reconciler = Reconciler(fresh_store, api, transcripts, policy)  # type: ignore[arg-type]
    reconciler.run_pass()
    cursor = fresh_store.sweep_cursor()
    assert cursor is not None and cursor.created_at is not None
    # the worst case: the file of the job the sweep has just passed
    victim = max((job for job in fresh_store.jobs(status=State.DONE) if job.created_at <= cursor.created_at),
                 key=lambda job: job.created_at)
    transcripts.path_for(victim.job_id).unlink()
    api.remote.append(remote_job(victim.job_id))
    elapsed, per_pass = 0, []
    while not transcripts.exists(victim.job_id):
        assert elapsed <= policy.sweep_period_seconds + PASS_SECONDS, "not restored within the stated time"
        one_pass_later(fresh_store, PASS_SECONDS)
        elapsed += PASS_SECONDS
        transcripts.checks = 0
        summary: Counter[str] = reconciler.run_pass()
        per_pass.append(transcripts.checks)
    assert summary[ReconcileOutcome.REPAIRED] == 1 and api.reads["transcript"] == 1
    assert transcripts.path_for(victim.job_id).read_bytes() == transcript_for(victim.job_id)
    # bounded work: a slice is the jobs of (the span they were created in, and a day's arrivals) over a day of
    # passes, not the history, and not a week's worth of creation time when the jobs fill less of it
    expected = JOBS * PASS_SECONDS * (span + DAY) / DAY / span
    assert max(per_pass) <= 2 * expected + 2 < JOBS / 20, per_pass
    # It really took the sweep, not a check of everything: here the jobs do not age and none arrive, so a
    # sweep climbs `span` of creation time at (1 + span / DAY) seconds per second, and ends early.
    assert elapsed > 0.8 * span * DAY / (span + DAY)
    assert sum(per_pass) <= 1.5 * JOBS  # one sweep of the history, not one per 1/8 of a day


@pytest.mark.parametrize("began_ago", [DAY + 600, None],
                         ids=["cron-down-for-a-day", "a-cursor-saved-before-sweeps-recorded-their-start"])
def test_a_sweep_past_its_deadline_checks_everything_left(fresh_store: JobStore, tmp_path: Path,
                                                          began_ago: float | None) -> None:
    """The first pass after the deadline (or with no deadline known, which is taken as due) goes to the top."""
    transcripts = CountingFiles(tmp_path / "history")
    transcripts.ensure_directories()
    seeded_history(fresh_store, transcripts, 2_000)
    reconciler = Reconciler(fresh_store, StubAPI([]), transcripts,  # type: ignore[arg-type]
                            ReconcilePolicy(sweep_floor=10))
    reconciler.run_pass()
    first = transcripts.checks
    assert 10 <= first < 100
    began = None if began_ago is None else fresh_store.now() - began_ago
    with fresh_store.database.transaction() as tx:
        tx.execute("UPDATE reconciler_state SET started_at = $1, pass_at = pass_at - $2", began, PASS_SECONDS)
    transcripts.checks = 0
    reconciler.run_pass()
    assert first + transcripts.checks == 2_000 and fresh_store.sweep_cursor().created_at is None


def test_one_pass_checks_at_most_the_cap_and_the_next_goes_on_from_there(
        fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = CountingFiles(tmp_path / "history")
    transcripts.ensure_directories()
    seeded_history(fresh_store, transcripts, 3_000)
    policy = ReconcilePolicy(sweep_floor=10, sweep_cap=1_000, sweep_batch=300)
    reconciler = Reconciler(fresh_store, StubAPI([]), transcripts, policy)  # type: ignore[arg-type]
    reconciler.run_pass()  # the first pass: no previous one, so a slice of `first_pass_interval_seconds`
    first = transcripts.checks
    seen = []
    for _ in range(4):
        one_pass_later(fresh_store, 86400)  # so long ago that the slice is the whole window: only the cap bounds it
        transcripts.checks = 0
        reconciler.run_pass()
        seen.append(transcripts.checks)
    assert first + sum(seen[:3]) == 3_000 and max(seen) == 1_000  # each pass goes on where the last stopped
    assert seen == [1_000, 1_000, 1_000 - first, 1_000]  # the third reached the top; the fourth starts a new sweep
    assert fresh_store.sweep_cursor().created_at is not None


class DiskFull(StubAPI):
    def download_transcript(self, job_id: str, target: object) -> None:
        raise OSError("disk full")


def test_a_queued_repair_is_retried_next_pass_not_next_sweep(fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = TranscriptFiles(tmp_path / "history").ensure_directories()
    oldest = seeded_history(fresh_store, transcripts, 3)[-1]
    transcripts.path_for(oldest).unlink()
    policy = ReconcilePolicy(sweep_floor=1, first_pass_interval_seconds=0)  # one job a pass: the oldest first
    failed = Reconciler(fresh_store, DiskFull([]), transcripts, policy).run_pass()  # type: ignore[arg-type]
    assert failed[ReconcileOutcome.FAILED] == 1 and failed["swept"] == 1
    assert [job.job_id for job in fresh_store.due_repairs(10)] == [oldest]
    retried = Reconciler(fresh_store, StubAPI([remote_job(oldest)]), transcripts, policy).run_pass()  # type: ignore[arg-type]
    assert retried[ReconcileOutcome.REPAIRED] == 1 and retried["swept"] == 1  # the sweep itself moved on
    assert fresh_store.due_repairs(10) == [] and transcripts.exists(oldest)


def test_the_repair_sweep_reads_the_index_alone(fresh_store: JobStore) -> None:
    """The sweep reads tens of thousands of done jobs a pass: with the id and file in the index, no table page
    is read for them, wherever in a large table they lie."""
    history(fresh_store, 200)
    now = fresh_store.now()
    with tests_query_plans.recording() as seen:
        fresh_store.done_jobs_after(now - 86400, "", now, 100)
    [(sql, params)] = seen
    with fresh_store.database.transaction() as tx:
        plan = " ".join(row["detail"] for row in tx.execute("EXPLAIN QUERY PLAN " + sql, *params))
    assert "SEARCH jobs USING COVERING INDEX" in plan, plan
