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

from cronjob import run_pass
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
    """The check can fail: without the new indexes, the repair sweep and `--list` read the whole table."""
    with fresh_store.database.transaction() as tx:
        for index in ("jobs_by_check", "jobs_by_created"):
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
RECHECK = ReconcilePolicy().recheck_seconds


def seeded_history(store: JobStore, transcripts: TranscriptFiles, count: int = JOBS, span: float = WEEK - 3600,
                   checked: str = "spread") -> list[str]:
    """`count` done jobs evenly over the last `span` seconds, newest first, their files hard links of one. Their
    last checks are `spread` over the last recheck period (as passes every few minutes leave them, though in a
    shuffled order, where passes leave them roughly in the order jobs finished: the guarantee must not rest on
    the order), `never` made, or all made `now`."""
    original = transcripts.directory / "original.json"
    original.write_bytes(transcript_for("hist00000000"))
    ids = [f"hist{number:08d}" for number in range(count)]
    with store.database.transaction() as tx:
        now = tx.now()
        for number, job_id in enumerate(ids):
            checked_at = {"spread": now - RECHECK * ((number * 7919) % count) / count, "never": 0.0,
                          "now": now}[checked]
            tx.execute("INSERT INTO jobs (reference, job_id, audio, status, transcript, created_at, updated_at, "
                       "checked_at) VALUES ($1, $2, 'a.wav', 'done', $3, $4, $4, $5)", f"{number:032d}", job_id,
                       str(transcripts.path_for(job_id)), now - 60 - number * span / count, checked_at)
            os.link(original, transcripts.path_for(job_id))
    return ids


def one_pass_later(store: JobStore, seconds: float) -> None:
    """Time passing between passes, by the database's clock: every check made looks `seconds` older (the
    jobs' ages stay: the window does not slide in these tests)."""
    with store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET checked_at = checked_at - $1 WHERE checked_at > 0", seconds)


def checked_at(store: JobStore, job_id: str) -> float | None:
    with store.database.transaction(write=False) as tx:
        return tx.execute("SELECT checked_at FROM jobs WHERE job_id = $1", job_id)[0]["checked_at"]


class CountingFiles(TranscriptFiles):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.checks = 0

    def exists(self, job_id: str) -> bool:
        self.checks += 1
        return super().exists(job_id)


def counting_files(tmp_path: Path) -> CountingFiles:
    transcripts = CountingFiles(tmp_path / "history")
    transcripts.ensure_directories()
    return transcripts


def test_a_file_deleted_from_a_large_history_is_restored_within_a_day_of_passes(
        fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = counting_files(tmp_path)
    ids = seeded_history(fresh_store, transcripts)
    policy = ReconcilePolicy(grace_seconds=0, concurrency=1, check_floor=10)  # the time rule, not the floor
    api = StubAPI([remote_job(job_id) for job_id in ids[:1]])
    reconciler = Reconciler(fresh_store, api, transcripts, policy)  # type: ignore[arg-type]
    run_pass(reconciler)
    # the worst case: the file of the job checked last
    victim = max(ids, key=lambda job_id: checked_at(fresh_store, job_id) or 0)
    transcripts.path_for(victim).unlink()
    api.remote.append(remote_job(victim))
    elapsed, per_pass = 0, []
    while not transcripts.exists(victim):
        assert elapsed <= RECHECK + PASS_SECONDS, "not restored within the stated time"
        one_pass_later(fresh_store, PASS_SECONDS)
        elapsed += PASS_SECONDS
        transcripts.checks = 0
        summary: Counter[str] = run_pass(reconciler)
        per_pass.append(transcripts.checks)
    assert summary[ReconcileOutcome.REPAIRED] == 1 and api.reads["transcript"] == 1
    assert transcripts.path_for(victim).read_bytes() == transcript_for(victim)
    # bounded work: a pass checks the files that fell due since the last one, not the history
    expected = JOBS * PASS_SECONDS / RECHECK
    assert max(per_pass) <= 2 * expected + 10 < JOBS / 20, per_pass
    assert elapsed > 0.9 * RECHECK  # it really took the sweep, not a check of everything
    assert sum(per_pass) <= 1.1 * JOBS  # every file about once, not more


def test_jobs_past_the_retention_cost_one_read_then_none(fresh_store: JobStore, tmp_path: Path) -> None:
    """Files Speechmatics can no longer give again are not checked: each such job is read once, marked, and
    no later pass reads it."""
    transcripts = counting_files(tmp_path)
    seeded_history(fresh_store, transcripts, 2_000, checked="never")
    with fresh_store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET created_at = created_at - $1", WEEK)  # all older than the retention
    reconciler = Reconciler(fresh_store, StubAPI([]), transcripts, ReconcilePolicy(check_floor=10))  # type: ignore[arg-type]
    run_pass(reconciler)
    assert transcripts.checks == 0
    one_pass_later(fresh_store, 2 * DAY)
    assert fresh_store.due_checks(fresh_store.now(), 10_000) == []


def test_one_pass_checks_at_most_the_cap_and_the_next_goes_on_from_there(
        fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = counting_files(tmp_path)
    seeded_history(fresh_store, transcripts, 3_000, checked="never")  # after an upgrade: all due at once
    policy = ReconcilePolicy(check_floor=10, checks_per_pass=1_000, check_batch=300)
    reconciler = Reconciler(fresh_store, StubAPI([]), transcripts, policy)  # type: ignore[arg-type]
    seen = []
    for _ in range(4):
        transcripts.checks = 0
        run_pass(reconciler)
        seen.append(transcripts.checks)
    assert seen == [1_000, 1_000, 1_000, 10]  # then only the floor: nothing is due for a day


def test_a_small_deployment_checks_every_file_every_pass(fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = counting_files(tmp_path)
    ids = seeded_history(fresh_store, transcripts, 50, checked="now")
    transcripts.path_for(ids[7]).unlink()
    api = StubAPI([remote_job(ids[7])])
    summary = run_pass(Reconciler(fresh_store, api, transcripts, ReconcilePolicy()))  # type: ignore[arg-type]
    assert transcripts.checks == 50 and summary[ReconcileOutcome.REPAIRED] == 1


class DiskFull(StubAPI):
    def download_transcript(self, job_id: str, target: object) -> None:
        raise OSError("disk full")


def test_a_failed_repair_is_retried_next_pass_not_next_day(fresh_store: JobStore, tmp_path: Path) -> None:
    transcripts = TranscriptFiles(tmp_path / "history").ensure_directories()
    ids = seeded_history(fresh_store, transcripts, 3, checked="now")
    one_pass_later(fresh_store, 3600)  # none due: only the floor reads one
    transcripts.path_for(ids[2]).unlink()
    with fresh_store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET checked_at = checked_at - 60 WHERE job_id = $1", ids[2])  # the longest ago
    policy = ReconcilePolicy(check_floor=1)
    failed = run_pass(Reconciler(fresh_store, DiskFull([]), transcripts, policy))  # type: ignore[arg-type]
    assert failed[ReconcileOutcome.FAILED] == 1
    retried = run_pass(Reconciler(fresh_store, StubAPI([remote_job(ids[2])]), transcripts, policy))  # type: ignore[arg-type]
    assert retried[ReconcileOutcome.REPAIRED] == 1 and transcripts.exists(ids[2])


def test_the_repair_sweep_reads_an_index_range(fresh_store: JobStore) -> None:
    history(fresh_store, 200)
    now = fresh_store.now()
    with tests_query_plans.recording() as seen:
        fresh_store.due_checks(now - 86400, 100)
    [(sql, params)] = seen
    with fresh_store.database.transaction() as tx:
        plan = " ".join(row["detail"] for row in tx.execute("EXPLAIN QUERY PLAN " + sql, *params))
    assert "SEARCH jobs USING INDEX jobs_by_check" in plan, plan


def test_the_repair_sweep_asks_the_database_per_batch_never_per_file(fresh_store: JobStore, tmp_path: Path) -> None:
    """A pass at a million jobs checks thousands of files: a query for each (which formats it should have, say)
    would make its cost a round trip per file, which on PostgreSQL is most of the pass."""
    transcripts = counting_files(tmp_path)
    seeded_history(fresh_store, transcripts, 300, checked="now")
    with fresh_store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET formats = 'srt' WHERE job_id = $1", "hist00000007")
    reconciler = Reconciler(fresh_store, StubAPI([]), transcripts, ReconcilePolicy(check_floor=300))  # type: ignore[arg-type]
    with tests_query_plans.recording() as seen:
        reconciler.repair_missing_transcripts()
    assert transcripts.checks == 300 and len(seen) < 30, [sql for sql, _ in seen][:5]
