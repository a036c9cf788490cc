"""The hand-off's outbox: an event recorded with every move into a final state, and only then; each attempt
settled under its lease; retries within a minute at first and never more than ten minutes apart."""

from __future__ import annotations

import json
import re
import threading

import pytest

from notification_flow import handoff
from notification_flow.jobs import JobStore, Notification
from notification_flow.lifecycle import FINISHED_STATES, Event, NotificationStatus, State
from notification_flow.settings import load_settings
from tests.query_plans import recording

REF, JOB_ID = "a" * 32, "abcdefghij"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TRANSCRIPT = Notification(NotificationStatus.SUCCESS, transcript="/t/abcdefghij.json")
FAILURE = Notification(NotificationStatus.ERROR, error="Job rejected due to invalid audio")


class Consumer(handoff.Sender):
    """A sender whose consumer refuses its first `refuse` attempts."""

    def __init__(self, refuse: int = 0) -> None:
        super().__init__(url=None, command="true", secret=None, timeout=5)
        object.__setattr__(self, "refuse", refuse)
        object.__setattr__(self, "seen", [])

    def attempt(self, event: str, body: str) -> str | None:
        self.seen.append((event, json.loads(body)))
        return "refused" if len(self.seen) <= self.refuse else None


def outbox_store(store: JobStore, refuse: int = 0, max_age: float = 3600) -> tuple[JobStore, handoff.Outbox, Consumer]:
    consumer = Consumer(refuse)
    return (JobStore(store.database, followers=(handoff.record_event,)),
            handoff.Outbox(store.database, consumer, max_age), consumer)


def events(store: JobStore) -> list[dict]:
    with store.database.transaction(write=False) as tx:
        return tx.execute("SELECT * FROM handoff_events ORDER BY created_at")


def test_a_done_job_records_one_event_with_the_body_the_issue_states(fresh_store: JobStore) -> None:
    store, outbox, consumer = outbox_store(fresh_store)
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    assert events(store) == []  # running is not final
    store.record_notification(JOB_ID, TRANSCRIPT)
    store.record_notification(JOB_ID, TRANSCRIPT)  # a duplicate moves nothing, records nothing
    assert [(e["status"], e["state"]) for e in events(store)] == [("done", "pending")]
    assert outbox.deliver_due() == {"delivered": 1}
    event, body = consumer.seen[0]
    assert event == handoff.event_id(REF, "done")
    assert body["type"] == "transcript.ready" and body["timestamp"].endswith("Z")
    assert body["data"] == {"job_id": JOB_ID, "reference": REF, "audio": "call.wav", "status": "done",
                            "transcript": "/t/abcdefghij.json", "error": None}
    assert outbox.deliver_due() == {}  # delivered once: nothing due


def test_rejected_then_done_hands_on_a_failure_then_a_transcript(fresh_store: JobStore) -> None:
    store, outbox, consumer = outbox_store(fresh_store)
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    store.record_notification(JOB_ID, FAILURE)
    store.record_notification(JOB_ID, TRANSCRIPT)  # a transcript outranks a failure report
    assert outbox.deliver_due() == {"delivered": 2}
    assert [(body["type"], body["data"]["error"]) for _, body in consumer.seen] == [
        ("transcript.failed", "Job rejected due to invalid audio"), ("transcript.ready", None)]
    assert len({event for event, _ in consumer.seen}) == 2


def test_a_job_adopted_after_submit_failed_hands_on_both_endings(fresh_store: JobStore) -> None:
    store, outbox, consumer = outbox_store(fresh_store)
    store.add_submission(REF, "call.wav")
    store.record_not_created(REF, "HTTP 500")
    store.record_created(REF, JOB_ID)  # the job turned up after all
    store.record_remote_status(JOB_ID, Event.EXPIRED)
    outbox.deliver_due()
    assert [(body["data"]["status"], body["data"]["job_id"]) for _, body in consumer.seen] == [
        ("submit_failed", None), ("expired", JOB_ID)]


def test_without_a_way_to_deliver_nothing_is_recorded(fresh_store: JobStore) -> None:
    settings = load_settings(environ={})
    assert handoff.followers(settings) == ()
    assert handoff.open_outbox(settings, fresh_store.database) is None
    fresh_store.add_submission(REF, "call.wav")
    fresh_store.record_created(REF, JOB_ID)
    fresh_store.record_notification(JOB_ID, TRANSCRIPT)
    assert events(fresh_store) == []
    enabled = load_settings(environ={"HANDOFF_URL": "http://127.0.0.1:9/in", "HANDOFF_SECRET": SECRET})
    assert handoff.followers(enabled) == (handoff.record_event,)


def test_a_failed_attempt_is_due_again_within_seconds_with_its_same_id(fresh_store: JobStore) -> None:
    store, outbox, consumer = outbox_store(fresh_store, refuse=1)
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    store.record_notification(JOB_ID, TRANSCRIPT)
    assert outbox.deliver_due() == {"failed": 1}
    (event,) = events(store)
    assert (event["state"], event["attempts"], event["last_error"]) == ("pending", 1, "refused")
    assert 0 < event["due_at"] - event["created_at"] <= handoff.RETRY_DELAYS[0]
    assert outbox.deliver_due() == {}  # not due yet
    with store.database.transaction() as tx:
        tx.execute("UPDATE handoff_events SET due_at = 0")
    assert outbox.deliver_due() == {"delivered": 1}
    assert consumer.seen[0][0] == consumer.seen[1][0]


def test_retries_fall_within_a_minute_at_first_and_ten_minutes_apart_at_most() -> None:
    waits = [max(handoff.retry_delay(n) for _ in range(50)) for n in range(1, 20)]
    assert sum(waits[:2]) < 60  # the first try is at once, so the first three fall within a minute
    assert max(waits) <= 600
    assert all(min(handoff.retry_delay(n) for _ in range(50)) > 0 for n in range(1, 20))


def test_an_event_failing_past_the_max_age_is_dead_and_kept_and_can_be_sent_again(fresh_store: JobStore) -> None:
    store, outbox, _ = outbox_store(fresh_store, refuse=1, max_age=0)
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    store.record_notification(JOB_ID, TRANSCRIPT)
    assert outbox.deliver_due() == {"dead": 1}
    assert [e["state"] for e in events(store)] == ["dead"]
    with store.database.transaction(write=False) as tx:
        assert handoff.facts(tx)["dead"] == 1
    assert outbox.redeliver(JOB_ID) == 1
    assert outbox.deliver_due() == {"delivered": 1}
    assert handoff.states_of(store, [REF]) == {REF: "delivered"}


def test_a_leased_event_is_not_claimed_twice(fresh_store: JobStore) -> None:
    store, outbox, _ = outbox_store(fresh_store)
    store.add_submission(REF, "call.wav")
    store.record_created(REF, JOB_ID)
    store.record_notification(JOB_ID, TRANSCRIPT)
    assert len(outbox.claim()) == 1
    assert outbox.claim() == []  # held by the first claim until settled or its lease runs out


def test_the_secret_must_be_a_standard_webhooks_secret() -> None:
    from notification_flow.settings import SettingsError

    for bad in ("not-a-secret", "whsec_@@@", "whsec_c2hvcnQ="):
        try:
            load_settings(environ={"HANDOFF_URL": "http://127.0.0.1:9/in", "HANDOFF_SECRET": bad})
        except SettingsError as error:
            assert "HANDOFF_SECRET" in str(error)
        else:
            raise AssertionError(bad)
    try:
        load_settings(environ={"HANDOFF_URL": "http://127.0.0.1:9/in"})
    except SettingsError as error:
        assert "HANDOFF_SECRET is not set" in str(error)
    else:
        raise AssertionError("a URL without a secret")
    assert State.DONE in FINISHED_STATES


def test_the_outbox_reads_index_ranges_whatever_it_has_delivered(fresh_store: JobStore) -> None:
    """Cost grows with the events waiting, never with those delivered: no statement reads the whole table."""
    store, outbox, _ = outbox_store(fresh_store)
    with store.database.transaction() as tx:
        for number in range(500):
            tx.execute("INSERT INTO handoff_events (id, reference, status, body, state, created_at, since, due_at, "
                       "attempts) VALUES ($1, $2, 'done', '{}', 'delivered', $3, $3, $3, 1)", f"msg_{number}",
                       f"old{number}", float(number))
        tx.execute("ANALYZE")
    with recording() as seen:
        store.add_submission(REF, "call.wav")
        store.record_created(REF, JOB_ID)
        store.record_notification(JOB_ID, FAILURE)
        outbox.deliver_due()
        outbox.next_due_in()
        outbox.redeliver(JOB_ID)
        outbox.redeliver(since=1e9)
        handoff.states_of(store, [REF, "old1"])
        with store.database.transaction(write=False) as tx:
            handoff.facts(tx)
    scans = []
    for sql, params in seen:
        if "handoff_events" not in sql or sql.startswith("EXPLAIN"):
            continue
        with store.database.transaction(write=False) as tx:
            plan = [row["detail"] for row in tx.execute("EXPLAIN QUERY PLAN " + sql, *params)]
        if any(re.search(r"\bSCAN (handoff_events|jobs)\b", line) for line in plan):
            scans.append((sql, plan))
    assert len([sql for sql, _ in seen if "handoff_events" in sql]) >= 8
    assert scans == []


def finished_jobs(store: JobStore, count: int) -> None:
    for number in range(count):
        reference, job_id = f"{number:032d}", f"job{number:07d}"
        store.add_submission(reference, "call.wav")
        store.record_created(reference, job_id)
        store.record_notification(job_id, TRANSCRIPT)


class SlowConsumer(Consumer):
    """A consumer each of whose attempts takes `seconds` of the outbox's clock (or sets `stop` on the first)."""

    def __init__(self, clock: list[float], seconds: float, stop: threading.Event | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "clock", clock)
        object.__setattr__(self, "seconds", seconds)
        object.__setattr__(self, "stop", stop)

    def attempt(self, event: str, body: str) -> str | None:
        self.clock[0] += self.seconds
        if self.stop is not None:
            self.stop.set()
        return super().attempt(event, body)


def test_an_attempt_starts_only_while_the_batch_lease_has_room_for_it(fresh_store: JobStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempts of a batch go one after another: one that could outlast the lease is not started, and the
    events left are released at once for whoever comes next, never left leased and never attempted twice at once."""
    clock = [1000.0]
    monkeypatch.setattr(handoff.time, "monotonic", lambda: clock[0])
    consumer = SlowConsumer(clock, seconds=consumer_lease(5) - 5 * handoff.ATTEMPT_TIMEOUTS + 1)  # leaves too little
    store = JobStore(fresh_store.database, followers=(handoff.record_event,))
    outbox = handoff.Outbox(store.database, consumer, 3600)
    finished_jobs(store, 3)
    assert outbox.deliver_due() == {"delivered": 1}  # the second would have started with too little lease left
    left = [event for event in events(store) if event["state"] == "pending"]
    assert len(left) == 2 and all(e["lease_until"] is None and e["attempts"] == 0 for e in left)
    assert outbox.deliver_due() == {"delivered": 1}


def consumer_lease(timeout: float) -> float:
    return timeout * handoff.LEASE_TIMEOUTS


def test_a_stop_between_attempts_releases_what_is_left(fresh_store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    consumer = SlowConsumer([0.0], seconds=0, stop=stop)
    store = JobStore(fresh_store.database, followers=(handoff.record_event,))
    outbox = handoff.Outbox(store.database, consumer, 3600)
    finished_jobs(store, 3)
    assert outbox.deliver_due(stop) == {"delivered": 1}
    assert [e["lease_until"] for e in events(store) if e["state"] == "pending"] == [None, None]


def test_a_round_ends_even_if_every_attempt_fails_and_is_due_again_at_once(fresh_store: JobStore,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Events that fail during a round wait for the next round, so a consumer that keeps failing cannot hold
    cronjob.py's pass (or the courier) in one round for ever."""
    # due again at once (a moment later: sqlite's clock has millisecond steps, so an event failed within the
    # millisecond the round began would otherwise count as due when it began)
    monkeypatch.setattr(handoff, "retry_delay", lambda attempts: 0.01)
    store, outbox, consumer = outbox_store(fresh_store, refuse=10 ** 6)
    finished_jobs(store, handoff.BATCH + 5)
    guard = threading.Thread(target=outbox.deliver_due, daemon=True)
    guard.start()
    guard.join(timeout=20)
    assert not guard.is_alive(), "the round never ended"
    assert len(consumer.seen) == handoff.BATCH + 5


def test_a_courier_does_not_wake_for_events_another_process_holds(fresh_store: JobStore) -> None:
    store, outbox, _ = outbox_store(fresh_store)
    finished_jobs(store, 1)
    assert outbox.next_due_in() == 0
    assert len(outbox.claim()) == 1
    assert outbox.next_due_in() > 0  # due, but leased elsewhere: not before the lease runs out
