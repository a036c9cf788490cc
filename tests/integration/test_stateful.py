"""Any interleaving of submit, deliver, duplicate, drop, reorder, crash, slow creation, broken downloads,
conflicting notifications and reconcile converges.

Hypothesis drives a real server.py process, the real store and the real reconciler against the emulator in
hold mode, where every notification waits until a rule delivers, duplicates or drops it (in any order).
Jobs may be created only after their row was judged not created, downloads may come back truncated or
empty, and a job may be reported failed and done at once, in either order.
Whatever happened, once Speechmatics has finished every job and cronjob.py has run, every job must be in
the emulator's true final state, with the transcript it serves, byte for byte.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from cronjob import run_pass
from notification_flow.api import SpeechmaticsAPI
from notification_flow.lifecycle import TRANSITIONS, State
from notification_flow.reconcile import ReconcilePolicy, Reconciler
from notification_flow.transcripts import TranscriptFiles
from tests.integration.support import API_KEY, Stack, create_job
from tests.stores import holds_transcript

EXPECTED = {"done": "done", "rejected": "rejected"}
DOWNLOAD_FAULTS = ("truncate_transcript_fraction", "empty_transcript_fraction")


def reachable(source: str) -> set[str]:
    """Every state the lifecycle table can take a job to from `source`, in any number of moves."""
    seen, frontier = {source}, [State(source)]
    while frontier:
        state = frontier.pop()
        for (start, _), target in TRANSITIONS.items():
            if start is state and target.value not in seen:
                seen.add(target.value)
                frontier.append(target)
    return seen


@pytest.mark.emulator(processing_seconds=3600, hold_notifications=True, rate_limit_post_per_second=0,
                      rate_limit_get_per_second=0)
def test_any_interleaving_converges_to_the_true_state(served: Stack) -> None:
    store = served.store()
    api = SpeechmaticsAPI(API_KEY, served.emulator.url, timeout=10)
    transcripts = TranscriptFiles(served.transcripts)

    class Interleavings(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.references: list[str] = []
            self.running: list[str] = []
            self.last_seen: dict[str, str] = {}
            self.done_ids: list[str] = []
            self.reference_of: dict[str, str] = {}  # job id -> the reference its config carries, as its token does

        @rule(crash=st.booleans())
        def submit(self, crash: bool) -> None:
            """client.py: record intent, create the job, record its id, unless it is killed in between."""
            reference = uuid.uuid4().hex
            store.add_submission(reference, "example.wav")
            job_id = create_job(served, reference, {"contents": ["transcript"]})
            if not crash:
                store.record_created(reference, job_id)
            self.references.append(reference)
            self.running.append(job_id)
            self.reference_of[job_id] = reference

        @rule()
        def a_slow_api_creates_the_job_after_its_row_was_judged(self) -> None:
            """The client gave up long ago; a pass judged its row not created; then the job appears."""
            reference = uuid.uuid4().hex
            store.add_submission(reference, "example.wav")
            with store.database.transaction() as tx:
                tx.execute("UPDATE jobs SET created_at = created_at - 3600, updated_at = updated_at - 3600 "
                           "WHERE reference = $1", reference)
            run_pass(Reconciler(store, api, transcripts, ReconcilePolicy(grace_seconds=0, concurrency=2)))
            assert store.find_by_reference(reference).status == "submit_failed"
            job_id = create_job(served, reference, {"contents": ["transcript"]})
            self.running.append(job_id)
            self.references.append(reference)
            self.reference_of[job_id] = reference

        # Choices are drawn as plain numbers, whatever the emulator holds, so Hypothesis can replay them.
        @precondition(lambda self: self.running)
        @rule(pick=st.integers(0, 99), outcome=st.sampled_from(["done", "done", "rejected"]))
        def speechmatics_finishes(self, pick: int, outcome: str) -> None:
            job_id = self.running.pop(pick % len(self.running))
            served.emulator.finish(job_id, outcome=outcome)
            if outcome == "done":
                self.done_ids.append(job_id)

        @rule(fault=st.sampled_from([None, *DOWNLOAD_FAULTS]))
        def downloads_break_or_mend(self, fault: str | None) -> None:
            served.emulator.set_faults(**{name: 1.0 if name == fault else 0.0 for name in DOWNLOAD_FAULTS})

        def report_conflicting(self, pick: int, statuses: tuple[str, str]) -> None:
            """Speechmatics' own notifications carry the token of the job's reference, whether or not its row
            has recorded the job id yet (the client may have crashed before it could)."""
            job_id = self.done_ids[pick % len(self.done_ids)]
            transcript = served.emulator.transcript_bytes(job_id)
            for status in statuses:
                body = transcript if status == "success" else b""
                assert served.notify(job_id, status=status, body=body, reference=self.reference_of[job_id],
                                     content_type="application/json").status_code in (200, 202, 503)

        @precondition(lambda self: self.done_ids)
        @rule(pick=st.integers(0, 99))
        def a_done_job_is_reported_failed_then_done(self, pick: int) -> None:
            self.report_conflicting(pick, ("error", "success"))

        @precondition(lambda self: self.done_ids)
        @rule(pick=st.integers(0, 99))
        def a_done_job_is_reported_done_then_failed(self, pick: int) -> None:
            self.report_conflicting(pick, ("success", "error"))

        @rule()
        def cronjob_runs(self) -> None:
            run_pass(Reconciler(store, api, transcripts, ReconcilePolicy(grace_seconds=0, concurrency=2)))

        @invariant()
        def jobs_move_only_along_the_table_and_done_means_a_file(self) -> None:
            for job in store.jobs():
                if job.reference not in self.references:
                    continue
                if job.reference in self.last_seen:
                    assert job.status in reachable(self.last_seen[job.reference]), (self.last_seen, job)
                self.last_seen[job.reference] = job.status
                if job.status == "done":
                    assert holds_transcript(transcripts, job.job_id)

        def teardown(self) -> None:
            served.emulator.set_faults(**dict.fromkeys(DOWNLOAD_FAULTS, 0.0))
            for job_id in self.running:
                served.emulator.finish(job_id, outcome="done")
            for held in served.emulator.held():
                served.emulator.drop(held["key"])
            run_pass(Reconciler(store, api, transcripts, ReconcilePolicy(grace_seconds=0, concurrency=2)))
            for reference in self.references:
                job = store.find_by_reference(reference)
                assert job is not None and job.job_id is not None, reference
                truth = served.emulator.job(job.job_id)["status"]
                assert job.status == EXPECTED[truth], (job, truth)
                if truth == "done":
                    assert transcripts.path_for(job.job_id).read_bytes() == served.emulator.transcript_bytes(
                        job.job_id)

    try:
        run_state_machine_as_test(Interleavings, settings=settings(
            max_examples=20, stateful_step_count=12, deadline=None, derandomize=True,
            # No shrinking: the emulator's retries run on real time, so a replayed prefix can differ, and
            # shrinking against real processes takes minutes. A failure prints its whole step sequence.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        api.close()
