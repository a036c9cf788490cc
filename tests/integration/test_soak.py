"""The soak (tests/soak/, `make soak`) in small: the same code path with ~40 jobs on each backend.

Every fault is on at once - dropped, duplicated (some concurrently), delayed and reordered notifications,
429/503 answers, a rejected share of jobs, a server SIGKILLed and restarted at a seeded moment, a client
killed between submitting and recording, two overlapping cronjob passes - and every counter must be zero.
PostgreSQL runs two servers, each notified by half of the jobs. SOAK_SEED replays another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.soak.checks import check_deliveries, check_logs, epoch, unproven_answers
from tests.soak.options import SoakOptions
from tests.soak.phases import notifications_settled, run_soak
from tests.soak.records import KillWindow, SoakResult

SEED = int(os.environ.get("SOAK_SEED", "20240611"))
JOBS = 40


def test_short_soak_loses_nothing(database_url: str, tmp_path: Path) -> None:
    servers = 2 if database_url.startswith("postgres") else 1
    result = run_soak(SoakOptions(jobs=JOBS, seed=SEED, servers=servers), database_url, tmp_path / "soak",
                      say=print)
    print(result.report())
    assert result.failures() == {}, result.report()
    assert result.observed["jobs at the API"] == JOBS
    # The faults really happened, or the zeros above prove nothing.
    assert result.observed["server SIGKILLs (each restarted)"] >= 1
    assert result.observed["notifications dropped"] > 0 and result.observed["notifications duplicated"] > 0
    assert result.observed["  rejected"] > 0
    assert result.observed["done jobs also reported failed"] > 0
    assert result.timings["cronjob passes overlapping"] > 0
    assert result.observed["hand-off events taken by the consumer"] >= JOBS  # every job, to a flaky consumer


def test_short_soak_with_delete_after_store_deletes_every_stored_job_and_loses_nothing(tmp_path: Path) -> None:
    options = SoakOptions(jobs=JOBS, seed=SEED, servers=1, delete_after_store=True)
    result = run_soak(options, f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "soak", say=print)
    print(result.report())
    assert result.failures() == {}, result.report()
    assert result.counters["stored jobs not deleted at the API"] == 0 == result.counters["deletions still waiting"]
    assert result.observed["jobs deleted at the API once stored"] == result.observed["jobs at the API"] == JOBS
    assert result.observed["server SIGKILLs (each restarted)"] >= 1


def test_the_checks_fire(tmp_path: Path) -> None:
    """Zeros from a check that cannot count anything would prove nothing: feed each one a real failure."""
    url = "http://127.0.0.1:1/webhook"
    window = KillWindow(url, killed_at=epoch("2030-01-01T00:00:10.000Z"), healthy_at=epoch("2030-01-01T00:00:12.000Z"))

    def attempt(job_id: str, outcome: int | str, at: str) -> dict:
        return {"job_id": job_id, "url": url, "attempt": 1, "duplicate": False, "outcome": outcome,
                "started_at": f"2030-01-01T00:00:{at}Z", "finished_at": f"2030-01-01T00:00:{at}Z"}

    result = SoakResult(1, SoakOptions(), "sqlite", tmp_path)
    deliveries = [attempt("aaaaaaaaaa", 503, "11.000"), attempt("bbbbbbbbbb", 503, "13.000"),
                  attempt("cccccccccc", 400, "14.000"), attempt("dddddddddd", 200, "15.000"),
                  attempt("eeeeeeeeee", 503, "16.000"), attempt("eeeeeeeeee", 503, "17.000")]
    unproven = tmp_path / "unproven.log"  # one of e's two 503s was a job id not proven yet; the other is not
    unproven.write_text("INFO server notification job=eeeeeeeeee status=success outcome=job id not proven yet "
                        "code=503 stored=- ms=2.7\n")
    check_deliveries(deliveries, [window], result, unproven_answers([unproven]))
    assert result.counters["5xx to valid notifications outside kill windows"] == 2
    assert [example[:14] for example in result.examples["5xx to valid notifications outside kill windows"]] == [
        "bbbbbbbbbb:503", "eeeeeeeeee:503"]
    assert result.counters["4xx to valid notifications"] == 1

    log = tmp_path / "server.log"
    log.write_text("INFO storage stored transcript aaaaaaaaaa.json (10 bytes)\n"
                   "INFO storage stored transcript bbbbbbbbbb.json (10 bytes)\n"
                   "WARNING server notification job=x could not be stored now: database is locked\n")
    (tmp_path / "cronjob.log").write_text("INFO storage stored transcript aaaaaaaaaa.json (10 bytes)\n")
    check_logs([log, tmp_path / "cronjob.log"], result)
    assert result.counters["duplicate transcript writes"] == 1
    assert result.counters["'database is locked' errors in the logs"] == 1

    assert notifications_settled([attempt("aaaaaaaaaa", "error: refused", "01.000")], {"aaaaaaaaaa"}) is False
    assert notifications_settled([attempt("aaaaaaaaaa", 200, "01.000")], {"aaaaaaaaaa", "bbbbbbbbbb"}) is False
    assert notifications_settled([attempt("aaaaaaaaaa", "dropped", "01.000")], {"aaaaaaaaaa"}) is True
