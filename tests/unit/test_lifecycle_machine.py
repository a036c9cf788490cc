"""Any sequence of what clients, notifications and reconcilers tell the store ends where the lifecycle table says.

Hypothesis drives the real store (sqlite in a temporary file) and a model that knows only `lifecycle.next_state`
and that a notification changes only the row holding its job id. After every step the two must agree on
every row, and no row may have left `done`, `expired` or `deleted`. The process-level machine in
tests/integration/test_stateful.py drives the same story through real processes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from notification_flow.jobs import Notification, open_store
from notification_flow.lifecycle import Event, NotificationStatus, State, next_state

REFERENCES = [f"{n:032d}" for n in range(4)]
JOB_IDS = [f"job{n:07d}" for n in range(4)]
NEVER_LEFT = (State.DONE, State.EXPIRED, State.DELETED)
notifications = st.builds(
    Notification,
    status=st.sampled_from(list(NotificationStatus)),
    transcript=st.sampled_from([None, "/t/file.json"]),
    error=st.sampled_from([None, "bad audio"]),
)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.store = open_store(f"sqlite:///{Path(self.directory.name) / 'jobs.db'}")
        self.model: dict[str, State] = {}  # reference -> state
        self.ids: dict[str, str] = {}  # reference -> job id
        self.left: dict[str, State] = {}  # rows seen in a state that is never left

    def teardown(self) -> None:
        self.directory.cleanup()

    def owner(self, job_id: str) -> str | None:
        return next((ref for ref, known in self.ids.items() if known == job_id), None)

    def model_move(self, reference: str, event: Event | None) -> None:
        target = next_state(self.model[reference], event) if event else None
        if target:
            self.model[reference] = target

    def model_adopt(self, reference: str, job_id: str) -> None:
        if reference not in self.model or self.ids.get(reference, job_id) != job_id:
            return
        if reference in self.ids:
            return
        if self.owner(job_id) is not None or next_state(self.model[reference], Event.CREATED) is None:
            return
        self.model_move(reference, Event.CREATED)
        self.ids[reference] = job_id

    @rule(reference=st.sampled_from(REFERENCES))
    def client_records_intent(self, reference: str) -> None:
        if reference in self.model:
            return
        self.store.add_submission(reference, "a.wav")
        self.model[reference] = State.SUBMITTING

    @rule(reference=st.sampled_from(REFERENCES), job_id=st.sampled_from(JOB_IDS))
    def someone_learns_the_job_id(self, reference: str, job_id: str) -> None:
        self.store.record_created(reference, job_id)
        self.model_adopt(reference, job_id)

    @rule(reference=st.sampled_from(REFERENCES))
    def no_job_was_created(self, reference: str) -> None:
        self.store.record_not_created(reference, "no job")
        if reference in self.model:
            self.model_move(reference, Event.NOT_CREATED)

    @rule(job_id=st.sampled_from(JOB_IDS), notification=notifications)
    def a_notification_arrives(self, job_id: str, notification: Notification) -> None:
        self.store.record_notification(job_id, notification)
        owner = self.owner(job_id)
        if owner is not None:
            self.model_move(owner, notification.event)

    @rule(job_id=st.sampled_from(JOB_IDS), event=st.sampled_from([Event.TRANSCRIPT_STORED, Event.REJECTED,
                                                                  Event.EXPIRED, Event.DELETED]))
    def the_reconciler_learns_a_status(self, job_id: str, event: Event) -> None:
        self.store.record_remote_status(job_id, event, transcript="/t/file.json", error="why")
        owner = self.owner(job_id)
        if owner is not None:
            self.model_move(owner, event)

    @invariant()
    def the_store_agrees_with_the_table(self) -> None:
        rows = {job.reference: job for job in self.store.jobs()}
        assert {ref: job.status for ref, job in rows.items()} == self.model
        assert {ref: job.job_id for ref, job in rows.items() if job.job_id} == self.ids
        for reference, job in rows.items():
            if reference in self.left:
                assert job.status == self.left[reference], job
            if job.status in NEVER_LEFT:
                self.left[reference] = job.status
            if job.status is State.DONE:
                assert job.transcript


TestLifecycle = Lifecycle.TestCase
TestLifecycle.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
