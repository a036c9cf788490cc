"""The lifecycle table, enforced by the store: every event from every state, and the README agrees with it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from notification_flow.jobs import JobStore, Notification
from notification_flow.lifecycle import (
    OPEN_STATES,
    SETTLED_STATES,
    TRANSITIONS,
    Event,
    NotificationOutcome,
    NotificationStatus,
    State,
    next_state,
)
from tests.unit.support import put_row

ROOT = Path(__file__).resolve().parents[2]
JOB_ID = "abcdefghij"
REF = "r" * 32


def apply_event(store: JobStore, event: Event) -> None:
    """Deliver `event` to the row through the store method that carries it."""
    if event is Event.CREATED:
        store.record_created(REF, JOB_ID)
    elif event is Event.NOT_CREATED:
        store.record_not_created(REF, "no job")
    elif event is Event.PURGED:
        store.record_purged(REF)
    else:
        store.record_remote_status(JOB_ID, event, transcript="/t/abcdefghij.json", error="why")


def row_for(store: JobStore, state: State) -> None:
    """Rows that have learned their job id carry it; `submitting` and `submit_failed` rows never have."""
    job_id = None if state in (State.SUBMITTING, State.SUBMIT_FAILED) else JOB_ID
    put_row(store, REF, state, job_id)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_event_from_every_state_moves_exactly_as_the_table_says(fresh_store: JobStore, state: State,
                                                                       event: Event) -> None:
    row_for(fresh_store, state)
    apply_event(fresh_store, event)
    expected = next_state(state, event) or state
    assert fresh_store.find_by_reference(REF).status == expected


@pytest.mark.parametrize("status", list(NotificationStatus))
@pytest.mark.parametrize("state", [State.RUNNING, State.DONE, State.REJECTED, State.EXPIRED, State.DELETED])
def test_every_notification_from_every_state_with_an_id_moves_as_the_table_says(
        fresh_store: JobStore, state: State, status: NotificationStatus) -> None:
    put_row(fresh_store, REF, state, JOB_ID)
    transcript = "/t/abcdefghij.json" if status is NotificationStatus.SUCCESS else None
    fresh_store.record_notification(JOB_ID, Notification(status, transcript=transcript, error="why"))
    assert fresh_store.find(JOB_ID).status == (next_state(state, status.event) or state)


def test_final_states_other_than_rejected_and_submit_failed_have_no_way_out_but_our_own_purge() -> None:
    for state in SETTLED_STATES:
        way_out = [event for event in Event if next_state(state, event) and event is not Event.PURGED]
        if state is State.REJECTED:
            assert way_out == [Event.TRANSCRIPT_STORED]  # a transcript outranks a failure report
        elif state is State.SUBMIT_FAILED:
            assert way_out == [Event.CREATED]  # the job turned up after all
        else:
            assert way_out == [], state


def test_nothing_moves_a_job_back_to_submitting_and_done_is_never_left_but_for_a_purge() -> None:
    assert State.SUBMITTING not in TRANSITIONS.values()
    assert all(source is not State.DONE or event is Event.PURGED for source, event in TRANSITIONS)


def test_only_finished_jobs_are_purged_and_a_purged_one_never_moves_again() -> None:
    purged_from = {source for (source, event), target in TRANSITIONS.items() if target is State.PURGED}
    assert purged_from == {State.DONE, State.REJECTED, State.EXPIRED, State.DELETED, State.SUBMIT_FAILED}
    assert all(event is Event.PURGED for (_, event), target in TRANSITIONS.items() if target is State.PURGED)
    assert not any(source is State.PURGED for source, _ in TRANSITIONS)


def test_open_and_final_states_partition_the_states() -> None:
    assert set(OPEN_STATES) | set(SETTLED_STATES) == set(State)
    assert not set(OPEN_STATES) & set(SETTLED_STATES)


def test_every_state_and_event_is_used_by_the_table() -> None:
    used = {state for pair in TRANSITIONS for state in pair if isinstance(state, State)} | set(TRANSITIONS.values())
    assert used == set(State)
    assert {event for _, event in TRANSITIONS} == set(Event)


def readme_states() -> list[str]:
    section = (ROOT / "README.md").read_text().split("Job states", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"`([a-z_]+)`", section)


def readme_transitions() -> set[tuple[str, str]]:
    """The state diagram's arrows: lines like `running --transcript_stored--> done`."""
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"^([a-z_]+)\s+--[a-z_]+-->\s+([a-z_]+)", text, flags=re.MULTILINE))


def test_readme_names_every_state_and_only_those() -> None:
    assert sorted(set(readme_states())) == sorted(state.value for state in State)


def test_readme_state_diagram_draws_exactly_the_table() -> None:
    assert readme_transitions() == {(source.value, target.value) for (source, _), target in TRANSITIONS.items()}


def test_readme_diagram_names_the_event_of_every_arrow() -> None:
    text = (ROOT / "README.md").read_text()
    arrows = set(re.findall(r"^([a-z_]+)\s+--([a-z_]+)-->\s+([a-z_]+)", text, flags=re.MULTILINE))
    assert arrows == {(source.value, event.value, target.value) for (source, event), target in TRANSITIONS.items()}


@pytest.mark.parametrize("status", list(NotificationStatus))
def test_every_notification_status_names_its_event(status: NotificationStatus) -> None:
    assert status.event is (Event.TRANSCRIPT_STORED if status is NotificationStatus.SUCCESS else Event.REJECTED)


def test_outcomes_are_distinct_words() -> None:
    assert len({outcome.value for outcome in NotificationOutcome}) == len(NotificationOutcome)
