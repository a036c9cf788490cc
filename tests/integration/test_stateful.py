"""Any interleaving of submit, deliver, duplicate, drop, reorder, crash and reconcile converges.

Hypothesis drives a real server.py process, the real store and the real reconciler against the emulator in
hold mode, where every notification waits until a rule delivers, duplicates or drops it (in any order).
Whatever happened, once Speechmatics has finished every job and cronjob.py has run, every job must be in
the emulator's true final state, with the transcript it serves, byte for byte.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from notification_flow.api import SpeechmaticsAPI
from notification_flow.lifecycle import FINAL_STATES
from notification_flow.reconcile import ReconcilePolicy, Reconciler
from notification_flow.transcripts import TranscriptFiles
from tests.integration.support import API_KEY, Stack, create_job

EXPECTED = {"done": "done", "rejected": "rejected"}


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
            self.final_seen: dict[str, str] = {}

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

        # Choices are drawn as plain numbers, whatever the emulator holds, so Hypothesis can replay them.
        @precondition(lambda self: self.running)
        @rule(pick=st.integers(0, 99), outcome=st.sampled_from(["done", "done", "rejected"]))
        def speechmatics_finishes(self, pick: int, outcome: str) -> None:
            job_id = self.running.pop(pick % len(self.running))
            served.emulator.finish(job_id, outcome=outcome)

        @rule(pick=st.integers(0, 99), action=st.sampled_from(["deliver", "deliver", "duplicate", "drop"]))
        def a_notification_arrives_or_not(self, pick: int, action: str) -> None:
            held = sorted(served.emulator.held(), key=lambda h: int(h["key"]))
            if held:  # any of them, in any order: that is reordering
                getattr(served.emulator, action)(held[pick % len(held)]["key"])

        @rule()
        def cronjob_runs(self) -> None:
            Reconciler(store, api, transcripts, ReconcilePolicy(grace_seconds=0, concurrency=2)).run_pass()

        @invariant()
        def final_states_never_move_and_done_means_a_file(self) -> None:
            for job in store.jobs():
                if job.reference not in self.references:
                    continue
                if job.reference in self.final_seen:
                    assert job.status == self.final_seen[job.reference], job
                if job.status in FINAL_STATES:
                    self.final_seen[job.reference] = job.status
                if job.status == "done":
                    assert transcripts.exists(job.job_id)

        def teardown(self) -> None:
            for job_id in self.running:
                served.emulator.finish(job_id, outcome="done")
            for held in served.emulator.held():
                served.emulator.drop(held["key"])
            Reconciler(store, api, transcripts, ReconcilePolicy(grace_seconds=0, concurrency=2)).run_pass()
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
