"""The hand-off: every finished job handed to the user's application, at least once (issue 22).

An outbox. When a job reaches a final state, `record_event` (a store follower) writes one event in the same
transaction as the move, so no final state exists without its event and no event without its state. Events
are then delivered by whoever gets there first: the server's `Courier` right after its commit, and every
cronjob.py pass. A delivery is leased as a job is, so two processes never deliver one event at once; a
failed one is tried again after `RETRY_DELAYS` (with jitter) until it succeeds, or is marked dead once it
has failed for HANDOFF_MAX_AGE. Nothing is ever deleted: an operator can send any event again.

Two ways to deliver, one or both: an HTTP POST to HANDOFF_URL signed as Standard Webhooks says (the
`standardwebhooks` package signs, so any Standard Webhooks library verifies), or HANDOFF_COMMAND run without
a shell with the event on its standard input (exit 0: delivered). With both, an event is delivered when both
took it. With neither, no event is recorded and nothing here runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from notification_flow.cli import EXIT_BAD_SETTINGS, exit_on_bad_settings
from notification_flow.db import Database, Row, StoreUnavailable, Transaction
from notification_flow.jobs import JobStore, open_store
from notification_flow.lifecycle import FINISHED_STATES, State
from notification_flow.listing import parse_since, since_moment
from notification_flow.logs import emit, error_line
from notification_flow.metrics import gauge
from notification_flow.settings import SettingsError, load_settings

log = logging.getLogger("handoff")

# The wait after a failed attempt, by how many attempts have failed (the last repeats), each shortened by up
# to a quarter at random so that a consumer back from an outage is not met by every event at once. The first
# try is at once, so an event's first three fall within a minute; later ones are never more than ten minutes
# apart.
RETRY_DELAYS: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600)
JITTER = 0.25
BATCH = 20  # events claimed together, then attempted and settled one after another
# One attempt lasts at most this many timeouts (a POST's connect, write and read have one each, the command its
# own); a batch's lease is a few attempts long, and an attempt starts only while the lease has room for it.
ATTEMPT_TIMEOUTS = 4
LEASE_TIMEOUTS = 3 * ATTEMPT_TIMEOUTS
# How often the server's courier looks for due retries when nothing wakes it.
COURIER_POLL_SECONDS = 5.0


# The states of an event: waiting for (another) attempt, taken by the consumer, or given up on (kept).
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def event_id(reference: str, status: str) -> str:
    """The event's `webhook-id`: the same on every attempt and redelivery, and one per (job, final state), so
    recording it twice is impossible and a job that is rejected and then done gets two events."""
    return "msg_" + hashlib.sha256(f"{reference}/{status}".encode()).hexdigest()[:32]


def event_body(row: Row, at: float) -> str:
    """The JSON handed on: what the job ended as and where its transcript is, never the transcript itself."""
    done = row["status"] == State.DONE
    return json.dumps({
        "type": "transcript.ready" if done else "transcript.failed",
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "data": {"job_id": row["job_id"], "reference": row["reference"], "audio": row["audio"],
                 "status": row["status"], "transcript": row["transcript"] if done else None,
                 "error": None if done else row["error"]},
    }, separators=(",", ":"))


def record_event(tx: Transaction, row: Row) -> None:
    """The store follower: a move into a final state records its event, in the move's own transaction."""
    if row.get("status") not in FINISHED_STATES:
        return
    now = tx.now()
    tx.execute("INSERT INTO handoff_events (id, reference, status, body, state, created_at, since, due_at, "
               "attempts) VALUES ($1, $2, $3, $4, $5, $6, $6, $6, 0) ON CONFLICT (id) DO NOTHING",
               event_id(row["reference"], row["status"]), row["reference"], row["status"], event_body(row, now),
               PENDING, now)


def enabled(settings: Any) -> bool:
    return bool(settings.handoff_url or settings.handoff_command)


def followers(settings: Any) -> tuple[Any, ...]:
    """What `open_store` needs to record events: nothing unless a way to deliver is set."""
    return (record_event,) if enabled(settings) else ()


@dataclass(frozen=True)
class Sender:
    """One attempt to hand one event on, by every way that is set; each with its own timeout."""

    url: str | None
    command: str | None
    secret: str | None
    timeout: float
    # One connection pool per process, made on first use: a client per attempt would build its TLS context
    # each time. (Made lazily, so none crosses a gunicorn fork.)
    pool: dict[int, httpx.Client] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Sender:
        return cls(settings.handoff_url, settings.handoff_command, settings.handoff_secret,
                   float(settings.handoff_timeout))

    def attempt(self, event: str, body: str) -> str | None:
        """None if every way took the event, else why not (for the event's last_error; never the body)."""
        problems = [problem for problem in (self.post(event, body) if self.url else None,
                                            self.run(event, body) if self.command else None) if problem]
        return "; ".join(problems) or None

    def headers(self, event: str, body: str) -> dict[str, str]:
        """Signed afresh for this attempt: `webhook-timestamp` is now, `webhook-id` the event's own."""
        now = datetime.now(UTC)
        return {"webhook-id": event, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(self.secret or "").sign(event, now, body),
                "content-type": "application/json"}

    def post(self, event: str, body: str) -> str | None:
        try:
            answer = self.client().post(self.url or "", content=body.encode(), headers=self.headers(event, body))
        except httpx.HTTPError as error:
            return f"HANDOFF_URL: {type(error).__name__}"
        return None if 200 <= answer.status_code < 300 else f"HANDOFF_URL answered {answer.status_code}"

    def client(self) -> httpx.Client:
        if os.getpid() not in self.pool:
            self.pool.clear()
            self.pool[os.getpid()] = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self.pool[os.getpid()]

    def run(self, event: str, body: str) -> str | None:
        try:
            done = subprocess.run(shlex.split(self.command or ""), input=body.encode(), capture_output=True,
                                  timeout=self.timeout, check=False, env={**os.environ, "WEBHOOK_ID": event})
        except subprocess.TimeoutExpired:
            return "HANDOFF_COMMAND timed out"
        except OSError as error:
            return f"HANDOFF_COMMAND could not run: {error.strerror}"
        return None if done.returncode == 0 else f"HANDOFF_COMMAND exited {done.returncode}"


class Outbox:
    """The events of one database: claimed under a lease, attempted, settled."""

    def __init__(self, database: Database, sender: Sender, max_age: float) -> None:
        self.database, self.sender, self.max_age = database, sender, max_age

    def claim(self, limit: int = BATCH, due_by: float | None = None) -> list[Row]:
        """Lease up to `limit` events due (by `due_by`, else now), earliest due first, skipping those another
        process holds."""
        sql = ("UPDATE handoff_events SET lease_until = $1, attempts = attempts + 1 WHERE id IN ("  # noqa: S608
               " SELECT id FROM handoff_events WHERE state = $2 AND due_at <= $3"
               " AND (lease_until IS NULL OR lease_until < $4) ORDER BY due_at LIMIT $5"
               f" {self.database.skip_locked}) RETURNING *")
        with self.database.transaction() as tx:
            now = tx.now()
            return tx.execute(sql, now + self.lease_seconds, PENDING, now if due_by is None else due_by, now, limit)

    @property
    def lease_seconds(self) -> float:
        return self.sender.timeout * LEASE_TIMEOUTS

    def release(self, rows: list[Row]) -> None:
        """Give back claimed events that were not attempted: due again at once, for whoever comes next."""
        with self.database.transaction() as tx:
            for row in rows:
                tx.execute("UPDATE handoff_events SET lease_until = NULL, attempts = attempts - 1 WHERE id = $1 AND "
                           "lease_until = $2", row["id"], row["lease_until"])

    def settle(self, row: Row, problem: str | None) -> str:
        """Record one attempt's result, only while its lease is still ours: delivered, failed, or dead."""
        with self.database.transaction() as tx:
            now = tx.now()
            if problem is None:
                result, state, due = DELIVERED, DELIVERED, row["due_at"]
            elif now - row["since"] >= self.max_age:
                result, state, due = DEAD, DEAD, row["due_at"]
            else:
                result, state, due = "failed", PENDING, now + retry_delay(row["attempts"])
            delivered_at = now if problem is None else row["delivered_at"]
            tx.execute("UPDATE handoff_events SET state = $1, due_at = $2, last_error = $3, delivered_at = $4, "
                       "lease_until = NULL WHERE id = $5 AND lease_until = $6",
                       state, due, problem, delivered_at, row["id"], row["lease_until"])
            if tx.rowcount == 1:
                tx.execute("UPDATE handoff_deliveries SET n = n + 1 WHERE result = $1", result)
            else:
                result = "lease lost"  # another process may have it now: its result is the one recorded
        log.info("event %s job=%s %s%s", row["id"], row["reference"], result, f": {problem}" if problem else "")
        return result

    def deliver_due(self, stop: threading.Event | None = None) -> Counter[str]:
        """Attempt every event due when the round began, a batch at a time, each settled as soon as it is
        tried. An attempt starts only while the batch's lease has room for a whole one, and never once `stop`
        is set: the events left are released. Events that fail during the round wait for the next one, so a
        consumer that keeps failing cannot hold a round for ever."""
        results: Counter[str] = Counter()
        due_by = None
        while not (stop and stop.is_set()):
            claimed_at = time.monotonic()
            rows = self.claim(due_by=due_by)
            due_by = min((row["lease_until"] - self.lease_seconds for row in rows), default=due_by)  # its clock
            for index, row in enumerate(rows):
                room = claimed_at + self.lease_seconds - time.monotonic()
                if (stop and stop.is_set()) or room < self.sender.timeout * ATTEMPT_TIMEOUTS:
                    self.release(rows[index:])
                    return results
                results[self.settle(row, self.sender.attempt(row["id"], row["body"]))] += 1
            if len(rows) < BATCH:
                break
        results.pop("lease lost", None)
        return results

    def next_due_in(self) -> float | None:
        """Seconds until the earliest pending event is due (0 if one is), None if nothing is pending."""
        with self.database.transaction(write=False) as tx:
            found = tx.execute("SELECT MIN(CASE WHEN lease_until > due_at THEN lease_until ELSE due_at END) AS due "
                               "FROM handoff_events WHERE state = $1", PENDING)  # not before another's lease ends
            due = found[0]["due"] if found else None
            return None if due is None else max(0.0, float(due) - tx.now())

    def redeliver(self, job: str | None = None, since: float | None = None) -> int:
        """Make events due again now, dead ones included, with their own webhook-id: those of one job (by job id
        or reference), or those recorded since `since` (database clock). Returns how many."""
        with self.database.transaction() as tx:
            now = tx.now()
            if job is not None:
                where, value = ("reference IN (SELECT reference FROM jobs WHERE job_id = $4 OR reference = $4)", job)
            else:
                where, value = "created_at >= $4", since if since is not None else now
            tx.execute(f"UPDATE handoff_events SET state = $1, since = $2, due_at = $2, lease_until = NULL, "  # noqa: S608
                       f"attempts = 0 WHERE {where} AND $3 = $3", PENDING, now, 1, value)
            return tx.rowcount


def open_outbox(settings: Any, database: Database) -> Outbox | None:
    if not enabled(settings):
        return None
    return Outbox(database, Sender.from_settings(settings), float(settings.handoff_max_age))


class Courier:
    """The server's deliverer, one thread per worker: woken after a commit that recorded an event, it
    delivers at once without delaying the answer to Speechmatics; between wakes it retries what falls due."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def wake(self) -> None:
        self.start()
        self.woken.set()

    def start(self) -> None:
        """Started in each worker that uses it (a thread does not survive a fork)."""
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self.run, name="handoff-courier", daemon=True)
            self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.woken.clear()
            wait = COURIER_POLL_SECONDS
            try:
                self.outbox.deliver_due(self.stopping)
                due = self.outbox.next_due_in()
                wait = COURIER_POLL_SECONDS if due is None else min(max(due, 0.05), COURIER_POLL_SECONDS)
            except StoreUnavailable as error:
                log.warning("handoff: database unavailable: %s", error)
            except Exception:  # never let the thread die: cronjob.py would be left to deliver alone
                log.exception("handoff: unexpected error")
            self.woken.wait(wait)


# -- what operators see -----------------------------------------------------------------------------------------
def states_of(store: JobStore, references: list[str]) -> dict[str, str]:
    """Each job's hand-off state, that of its latest event (absent: no event), for `client.py --list`."""
    if not references:
        return {}
    among = ", ".join(f"${n}" for n in range(1, len(references) + 1))
    with store.database.transaction(write=False) as tx:
        rows = tx.execute(f"SELECT reference, state, created_at FROM handoff_events WHERE reference IN ({among}) "  # noqa: S608
                          "ORDER BY created_at", *references)
    return {row["reference"]: row["state"] for row in rows}


def facts(tx: Transaction) -> dict[str, Any]:
    """For /metrics: the backlog, the oldest undelivered event's age, dead events, deliveries by result."""
    pending = tx.execute("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM handoff_events WHERE state = $1",
                         PENDING)[0]
    dead = tx.execute("SELECT COUNT(*) AS n FROM handoff_events WHERE state = $1", DEAD)[0]["n"]
    counts = {row["result"]: int(row["n"]) for row in tx.execute("SELECT result, n FROM handoff_deliveries")}
    oldest = pending["oldest"]
    return {"backlog": int(pending["n"]), "oldest_age": 0.0 if oldest is None else max(0.0, tx.now() - oldest),
            "dead": int(dead), "deliveries": counts}


def gauges(tx: Transaction) -> list[Any]:
    """The outbox's families for /metrics (docs/handoff.md), in the scrape's transaction: what waits, for how
    long, what died, what was delivered."""
    found = facts(tx)
    return [gauge("handoff_backlog", "Hand-off events not delivered yet (pending)", found["backlog"]),
            gauge("handoff_oldest_undelivered_age_seconds", "Age of the oldest hand-off event not delivered yet (0 "
                  "when there is none)", found["oldest_age"]),
            gauge("handoff_dead_events", "Hand-off events that failed for HANDOFF_MAX_AGE and were given up on (kept; "
                  "cronjob.py --redeliver sends them again)", found["dead"]),
            gauge("handoff_deliveries", "Hand-off attempts by every process, by result",
                  {(result,): n for result, n in sorted(found["deliveries"].items())}, ["result"], counter=True)]


def retry_delay(attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt, with jitter."""
    delay = RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]
    return delay * (1 - JITTER * random.random())


# -- what the scripts call --------------------------------------------------------------------------------------
SETTING_FIELDS = ("handoff_url", "handoff_secret", "handoff_command", "handoff_timeout", "handoff_max_age")


def courier(settings: Any, database: Database) -> Courier | None:
    """The server's courier, started (None without HANDOFF_URL or HANDOFF_COMMAND)."""
    outbox = open_outbox(settings, database)
    if outbox is None:
        return None
    running = Courier(outbox)
    running.start()
    return running


def after_commit(courier: Courier | None, outcome: str) -> None:
    """The server's answer is decided and its move committed: a job that became done or rejected has an event
    waiting, so the courier goes now, in the background."""
    if courier is not None and outcome in (State.DONE, State.REJECTED):
        courier.wake()


def deliver_pass(settings: Any, database: Database, stopping: threading.Event | None = None) -> Counter[str]:
    """cronjob.py's share: deliver whatever is due, and say so in one line when anything was."""
    outbox = open_outbox(settings, database)
    if outbox is None:
        return Counter()
    try:
        results = outbox.deliver_due(stopping)
    except StoreUnavailable as error:
        log.warning("handoff: database unavailable: %s", error)
        return Counter()
    if results:
        emit(None, "handoff: " + ", ".join(f"{name} {results[name]}" for name in (DELIVERED, "failed", DEAD)),
             event="handoff", **{name: results[name] for name in (DELIVERED, "failed", DEAD)})
    return results


def add_redeliver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redeliver", nargs="?", const="", metavar="JOB_ID", help="hand events on again (dead "
                        "ones included) and exit: those of JOB_ID (a job id or reference), or with --since those "
                        "recorded since then")
    parser.add_argument("--since", type=parse_since, metavar="WHEN", help="with --redeliver: events recorded since "
                        "WHEN, a UTC date or time or a duration ago (2h, 7d)")


def redeliver(args: argparse.Namespace) -> int:
    """`cronjob.py --redeliver JOB_ID` or `--redeliver --since 2h`: due again now, then delivered at once."""
    if args.redeliver is None or bool(args.redeliver) == bool(args.since):
        print(error_line("--redeliver takes a JOB_ID, or --since WHEN (one of them)"), file=sys.stderr)
        return EXIT_BAD_SETTINGS
    with exit_on_bad_settings():
        settings = load_settings(overrides=vars(args))
        if not enabled(settings):
            raise SettingsError("--redeliver needs HANDOFF_URL or HANDOFF_COMMAND")
        store = open_store(settings.database_url)
    outbox = Outbox(store.database, Sender.from_settings(settings), float(settings.handoff_max_age))
    count = outbox.redeliver(args.redeliver or None, since_moment(store, args.since))
    results = outbox.deliver_due()
    emit(None, f"redeliver: {count} events due again; delivered {results[DELIVERED]}, failed {results['failed']}",
         event="redeliver", due=count, delivered=results[DELIVERED], failed=results["failed"])
    return 0 if count and not results["failed"] else 1
