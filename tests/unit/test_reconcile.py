"""The reconciler's decisions, against an in-process stand-in for the API that counts every read."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cronjob import run_pass, summary_line
from notification_flow.api import PAGE_SIZE, JobGone, JobNotFound
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import Event, ReconcileOutcome, State
from notification_flow.reconcile import ReconcilePolicy, Reconciler, RemoteJobs
from notification_flow.transcripts import IncomingFile, TranscriptFiles

POLICY = ReconcilePolicy(grace_seconds=0, concurrency=2)


def remote_job(job_id: str, status: str = "done", reference: str | None = None, created: float | None = None,
               errors: list[str] | None = None) -> dict[str, Any]:
    moment = datetime.fromtimestamp(created if created is not None else datetime.now(UTC).timestamp(), UTC)
    return {"id": job_id, "status": status, "created_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "config": {"tracking": {"reference": reference}} if reference else {},
            "errors": [{"message": message} for message in errors or []]}


def transcript_for(job_id: str) -> bytes:
    return json.dumps({"format": "2.9", "job": {"id": job_id}, "metadata": {}, "results": []}).encode()


class StubAPI:
    """The calls the reconciler makes, answered from a list of jobs (newest first), counting reads."""

    def __init__(self, jobs: list[dict[str, Any]], missing: dict[str, Exception] | None = None) -> None:
        self.remote = jobs
        self.missing = missing or {}
        self.reads: Counter[str] = Counter()

    def check_access(self) -> None:
        """The read every pass makes first, so a broken key shows even with nothing open."""
        self.reads["access"] += 1

    def recent_jobs(self, since: float, budget: Any = None) -> Iterator[dict[str, Any]]:
        for index, item in enumerate(self.remote):
            if index % PAGE_SIZE == 0:
                self.reads["page"] += 1
            yield item

    def job(self, job_id: str) -> dict[str, Any]:
        self.reads["job"] += 1
        if job_id in self.missing:
            raise self.missing[job_id]
        return next(item for item in self.remote if item["id"] == job_id)

    def download_transcript(self, job_id: str, target: IncomingFile) -> None:
        self.reads["transcript"] += 1
        if job_id in self.missing:
            raise self.missing[job_id]
        target.write(transcript_for(job_id))


def running(store: JobStore, reference: str, job_id: str) -> None:
    store.add_submission(reference, f"{job_id}.wav")
    store.record_created(reference, job_id)


def age(store: JobStore, seconds: float) -> None:
    with store.database.transaction() as tx:
        tx.execute("UPDATE jobs SET created_at = created_at - $1, updated_at = updated_at - $1", seconds)


def reconcile(store: JobStore, transcripts: TranscriptFiles, api: StubAPI,
              policy: ReconcilePolicy = POLICY) -> Counter[str]:
    return run_pass(Reconciler(store, api, transcripts, policy))  # type: ignore[arg-type]


def test_a_done_job_is_fetched_and_recovered(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    summary = reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa")]))
    assert summary[ReconcileOutcome.RECOVERED] == 1 and summary["checked"] == 1
    assert fresh_store.find("jobaaaaaaa").status == State.DONE
    assert transcripts.path_for("jobaaaaaaa").read_bytes() == transcript_for("jobaaaaaaa")


def test_a_rejected_job_records_speechmatics_reason_not_the_delivery_failure(
        fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    errors = ["Job rejected due to invalid audio", "Error in sending notification: x, retrying",
              "unable to send notification: x", "Sending notification failed"]
    reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa", "rejected", errors=errors)]))
    job = fresh_store.find("jobaaaaaaa")
    assert (job.status, job.error) == (State.REJECTED, "Job rejected due to invalid audio")


@pytest.mark.parametrize("status", ["deleted", "expired"])
def test_deleted_and_expired_jobs_are_recorded(fresh_store: JobStore, transcripts: TranscriptFiles,
                                               status: str) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    summary = reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa", status)]))
    assert summary[status] == 1 and fresh_store.find("jobaaaaaaa").status == State(status)


def test_a_running_job_stays_running_and_its_lease_is_released(fresh_store: JobStore,
                                                               transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    summary = reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa", "running")]))
    assert summary[ReconcileOutcome.STILL_RUNNING] == 1
    assert fresh_store.lease("a" * 32, 60) is True  # nobody holds it


def test_410_means_expired(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    api = StubAPI([], missing={"jobaaaaaaa": JobGone("expired", 410)})
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.EXPIRED] == 1


def test_404_for_a_young_job_is_a_failure_for_an_old_one_expiry(fresh_store: JobStore,
                                                               transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    api = StubAPI([], missing={"jobaaaaaaa": JobNotFound("not found", 404)})
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.FAILED] == 1
    assert fresh_store.find("jobaaaaaaa").status == State.RUNNING
    age(fresh_store, POLICY.retention_seconds + 60)
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.EXPIRED] == 1


def test_a_submitting_row_is_adopted_from_the_listing(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "a.wav")
    api = StubAPI([remote_job("jobaaaaaaa", reference="a" * 32)])
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.RECOVERED] == 1
    job = fresh_store.find_by_reference("a" * 32)
    assert (job.job_id, job.status) == ("jobaaaaaaa", State.DONE)


def test_a_submitting_row_of_a_live_client_is_left_alone(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "a.wav")
    summary = reconcile(fresh_store, transcripts, StubAPI([]))
    assert summary[ReconcileOutcome.STILL_RUNNING] == 1
    assert fresh_store.find_by_reference("a" * 32).status == State.SUBMITTING


def test_a_quiet_submitting_row_unknown_to_a_listing_that_reached_it_created_no_job(
        fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "a.wav")
    age(fresh_store, 3600)
    summary = reconcile(fresh_store, transcripts, StubAPI([remote_job("jobother00", reference="b" * 32)]))
    assert summary[ReconcileOutcome.SUBMIT_FAILED] == 1
    assert fresh_store.find_by_reference("a" * 32).status == State.SUBMIT_FAILED


def test_a_listing_that_did_not_reach_back_far_enough_proves_nothing() -> None:
    remote = RemoteJobs(StubAPI([]), clock_skew_seconds=300)  # type: ignore[arg-type]
    remote.oldest_listed = 1000.0
    assert remote.listed_back_to(1300.0) and not remote.listed_back_to(1299.0)


def test_one_job_with_an_id_is_asked_for_alone_not_listed(fresh_store: JobStore,
                                                        transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    api = StubAPI([remote_job("jobaaaaaaa")])
    reconcile(fresh_store, transcripts, api)
    assert (api.reads["page"], api.reads["job"]) == (0, 1)


def test_many_jobs_are_learned_from_pages_not_one_call_each(fresh_store: JobStore,
                                                           transcripts: TranscriptFiles) -> None:
    ids = [f"job{n:07d}" for n in range(30)]
    for number, job_id in enumerate(ids):
        running(fresh_store, f"{number:032d}", job_id)
    api = StubAPI([remote_job(job_id, "running") for job_id in reversed(ids)])
    reconcile(fresh_store, transcripts, api)
    assert (api.reads["page"], api.reads["job"]) == (1, 0)


def test_paging_stops_once_asking_each_job_would_be_cheaper(fresh_store: JobStore,
                                                            transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    running(fresh_store, "b" * 32, "jobbbbbbbb")
    others = [remote_job(f"x{n:09d}", "running") for n in range(10 * PAGE_SIZE)]
    api = StubAPI([*others, remote_job("jobaaaaaaa", "running"), remote_job("jobbbbbbbb", "running")])
    reconcile(fresh_store, transcripts, api)
    assert api.reads["page"] <= 3 and api.reads["job"] == 2


def test_one_failing_job_never_stops_the_pass(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    for number in range(3):
        running(fresh_store, f"{number:032d}", f"job{number:07d}")
    api = StubAPI([remote_job(f"job{n:07d}") for n in range(3)],
                  missing={"job0000001": OSError("disk full")})
    summary = reconcile(fresh_store, transcripts, api)
    assert (summary[ReconcileOutcome.RECOVERED], summary[ReconcileOutcome.FAILED]) == (2, 1)
    assert [fresh_store.find(f"job{n:07d}").status for n in range(3)] == [State.DONE, State.RUNNING, State.DONE]


def test_a_job_finished_by_someone_else_meanwhile_counts_as_already_final(
        fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    reconciler = Reconciler(fresh_store, StubAPI([remote_job("jobaaaaaaa")]), transcripts, POLICY)  # type: ignore[arg-type]
    fresh_store.record_remote_status("jobaaaaaaa", Event.DELETED)
    assert reconciler.apply("jobaaaaaaa", remote_job("jobaaaaaaa")) == ReconcileOutcome.ALREADY_FINAL


def test_a_missing_transcript_of_a_done_job_is_fetched_again(fresh_store: JobStore,
                                                            transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    api = StubAPI([remote_job("jobaaaaaaa")])
    reconcile(fresh_store, transcripts, api)
    transcripts.path_for("jobaaaaaaa").unlink()
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.REPAIRED] == 1
    assert transcripts.path_for("jobaaaaaaa").read_bytes() == transcript_for("jobaaaaaaa")


def test_a_transcript_speechmatics_no_longer_has_is_recorded_lost_once(fresh_store: JobStore,
                                                                       transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa")]))
    transcripts.path_for("jobaaaaaaa").unlink()
    gone = StubAPI([], missing={"jobaaaaaaa": JobGone("expired", 410)})
    assert reconcile(fresh_store, transcripts, gone)[ReconcileOutcome.FAILED] == 1
    job = fresh_store.find("jobaaaaaaa")
    assert job.transcript is None and "no longer" in job.error
    assert reconcile(fresh_store, transcripts, gone)[ReconcileOutcome.FAILED] == 0


def test_the_summary_line_names_what_happened() -> None:
    summary = Counter({"checked": 4, ReconcileOutcome.RECOVERED: 1, ReconcileOutcome.REPAIRED: 1,
                       ReconcileOutcome.STILL_RUNNING: 1, ReconcileOutcome.SUBMIT_FAILED: 1})
    assert summary_line(summary) == ("checked 4, recovered 1, repaired 1, still running 1, failed 0, "
                                     "submit failed 1")


@pytest.mark.parametrize(("quiet_for", "judged"), [(60, False), (POLICY.could_create_for - 1, False),
                                                   (POLICY.could_create_for + 1, True)])
def test_a_submitting_row_is_judged_only_by_a_listing_begun_after_its_client_could_create_the_job(
        fresh_store: JobStore, transcripts: TranscriptFiles, quiet_for: float, judged: bool) -> None:
    fresh_store.add_submission("a" * 32, "a.wav")
    age(fresh_store, quiet_for)
    summary = reconcile(fresh_store, transcripts, StubAPI([]))
    assert (summary[ReconcileOutcome.SUBMIT_FAILED] == 1) is judged
    expected = State.SUBMIT_FAILED if judged else State.SUBMITTING
    assert fresh_store.find_by_reference("a" * 32).status == expected


def test_a_job_that_turns_up_after_its_row_was_judged_not_created_is_adopted_by_a_listing(
        fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "slow.wav")
    fresh_store.record_not_created("a" * 32, "Speechmatics has no job with this reference")
    running(fresh_store, "b" * 32, "jobbbbbbbb")  # an open job, so the pass lists
    fresh_store.add_submission("c" * 32, "c.wav")
    api = StubAPI([remote_job("jobcccccc0", reference="c" * 32), remote_job("jobaaaaaaa", reference="a" * 32),
                   remote_job("jobbbbbbbb")])
    reconcile(fresh_store, transcripts, api)  # adopted, then fetched in the same pass
    adopted = fresh_store.find_by_reference("a" * 32)
    assert (adopted.job_id, adopted.status, adopted.error) == ("jobaaaaaaa", State.DONE, None)
    assert transcripts.path_for("jobaaaaaaa").read_bytes() == transcript_for("jobaaaaaaa")


def test_a_truncated_or_empty_download_is_never_published(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")

    class Truncating(StubAPI):
        def download_transcript(self, job_id: str, target: IncomingFile) -> None:
            target.write(transcript_for(job_id)[:20])

    summary = reconcile(fresh_store, transcripts, Truncating([remote_job("jobaaaaaaa")]))
    assert summary[ReconcileOutcome.FAILED] == 1
    assert not transcripts.path_for("jobaaaaaaa").exists()
    assert fresh_store.find("jobaaaaaaa").status == State.RUNNING
    assert reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa")]))[ReconcileOutcome.RECOVERED] == 1


def test_a_404_during_a_repair_of_a_young_job_is_not_a_loss(fresh_store: JobStore,
                                                            transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa")]))
    transcripts.path_for("jobaaaaaaa").unlink()
    blip = StubAPI([], missing={"jobaaaaaaa": JobNotFound("not found", 404)})
    assert reconcile(fresh_store, transcripts, blip)[ReconcileOutcome.FAILED] == 1
    assert fresh_store.find("jobaaaaaaa").error is None
    assert reconcile(fresh_store, transcripts, StubAPI([remote_job("jobaaaaaaa")]))[ReconcileOutcome.REPAIRED] == 1


def test_an_empty_published_file_is_repaired(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    api = StubAPI([remote_job("jobaaaaaaa")])
    reconcile(fresh_store, transcripts, api)
    transcripts.path_for("jobaaaaaaa").write_bytes(b"")
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.REPAIRED] == 1
    assert transcripts.path_for("jobaaaaaaa").read_bytes() == transcript_for("jobaaaaaaa")


def test_a_recently_failed_row_is_looked_for_even_when_nothing_else_is_open(fresh_store: JobStore,
                                                                           transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "slow.wav")
    fresh_store.record_not_created("a" * 32, "Speechmatics has no job with this reference")
    api = StubAPI([remote_job("jobaaaaaaa", reference="a" * 32)])
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.RECOVERED] == 1
    assert fresh_store.find_by_reference("a" * 32).status == State.DONE


def test_a_row_judged_longer_ago_than_the_adoption_window_is_final(fresh_store: JobStore,
                                                                   transcripts: TranscriptFiles) -> None:
    fresh_store.add_submission("a" * 32, "slow.wav")
    fresh_store.record_not_created("a" * 32, "Speechmatics has no job with this reference")
    age(fresh_store, POLICY.adoption_window_seconds + 60)
    api = StubAPI([remote_job("jobaaaaaaa", reference="a" * 32)])
    reconcile(fresh_store, transcripts, api)
    assert api.reads["page"] == 0
    assert fresh_store.find_by_reference("a" * 32).status == State.SUBMIT_FAILED


def test_a_pass_whose_leases_run_out_meets_no_job_twice(fresh_store: JobStore, transcripts: TranscriptFiles) -> None:
    for number in range(3):
        running(fresh_store, f"{number:032d}", f"job{number:07d}")
    api = StubAPI([remote_job(f"job{n:07d}", "running") for n in range(3)])
    expired_at_once = ReconcilePolicy(grace_seconds=0, concurrency=2, lease_seconds=-1)
    summary = reconcile(fresh_store, transcripts, api, expired_at_once)
    assert summary["checked"] == 3 and summary[ReconcileOutcome.STILL_RUNNING] == 3


def test_a_defect_or_an_odd_answer_cuts_the_pass_short_without_ending_it(fresh_store: JobStore,
                                                                        transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    running(fresh_store, "b" * 32, "jobbbbbbbb")

    class Broken(StubAPI):
        def recent_jobs(self, since: float, budget: Any = None) -> Iterator[dict[str, Any]]:
            raise TypeError("an answer nobody foresaw")

    summary = reconcile(fresh_store, transcripts, Broken([]))
    assert summary[ReconcileOutcome.FAILED] == 1
    assert fresh_store.lease("a" * 32, 60) is True  # nothing left held


def test_a_listing_of_malformed_jobs_leaves_each_job_to_be_asked_for(fresh_store: JobStore,
                                                                     transcripts: TranscriptFiles) -> None:
    import httpx

    from notification_flow.api import SpeechmaticsAPI
    from notification_flow.retry import RetryPolicy

    running(fresh_store, "a" * 32, "jobaaaaaaa")
    running(fresh_store, "b" * 32, "jobbbbbbbb")

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/jobs":
            return httpx.Response(200, json={"jobs": [{"id": "jobaaaaaaa"}]})  # no created_at
        if path.endswith("/transcript"):
            return httpx.Response(200, content=transcript_for(path.split("/")[-2]))
        return httpx.Response(200, json={"job": remote_job(path.split("/")[-1])})

    api = SpeechmaticsAPI("k", "http://api.invalid/v2", retry=RetryPolicy(attempts=1),
                          transport=httpx.MockTransport(answer))
    summary = run_pass(Reconciler(fresh_store, api, transcripts, POLICY))
    assert summary[ReconcileOutcome.RECOVERED] == 2


def test_one_file_the_sweep_cannot_check_costs_one_check_not_the_pass(fresh_store: JobStore,
                                                                      transcripts: TranscriptFiles) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    running(fresh_store, "b" * 32, "jobbbbbbbb")
    api = StubAPI([remote_job("jobaaaaaaa"), remote_job("jobbbbbbbb")])
    reconcile(fresh_store, transcripts, api)
    transcripts.path_for("jobbbbbbbb").unlink()

    class OneBadObject(TranscriptFiles):
        def exists(self, job_id: str) -> bool:
            if job_id == "jobaaaaaaa":
                raise OSError("HTTP 500 on HEAD")
            return super().exists(job_id)

    reconciler = Reconciler(fresh_store, api, OneBadObject(transcripts.directory), POLICY)  # type: ignore[arg-type]
    summary = run_pass(reconciler)
    assert (summary[ReconcileOutcome.FAILED], summary[ReconcileOutcome.REPAIRED]) == (1, 1)
    assert reconciler.cut_short is None
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.FAILED] == 0  # checked again, and fine


def test_a_pass_that_cannot_read_the_api_is_cut_short_even_with_nothing_open(fresh_store: JobStore,
                                                                              transcripts: TranscriptFiles) -> None:
    from notification_flow.api import Unauthorized

    class Refused(StubAPI):
        def check_access(self) -> None:
            raise Unauthorized("Speechmatics refused the API key (HTTP 401)", 401)

    reconciler = Reconciler(fresh_store, Refused([]), transcripts, POLICY)  # type: ignore[arg-type]
    assert run_pass(reconciler)[ReconcileOutcome.FAILED] == 1
    assert isinstance(reconciler.cut_short, Unauthorized)


@pytest.mark.parametrize("reference", [{"a": 1}, ["a"], 7, None])
def test_a_foreign_job_of_any_shape_is_skipped_by_the_listing(fresh_store: JobStore, transcripts: TranscriptFiles,
                                                             reference: Any) -> None:
    running(fresh_store, "a" * 32, "jobaaaaaaa")
    running(fresh_store, "b" * 32, "jobbbbbbbb")
    foreign = {**remote_job("foreign001"), "config": {"tracking": {"reference": reference}}}
    api = StubAPI([foreign, remote_job("jobaaaaaaa"), remote_job("jobbbbbbbb")])
    assert reconcile(fresh_store, transcripts, api)[ReconcileOutcome.RECOVERED] == 2
