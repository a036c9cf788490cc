"""The job store: one table of jobs and the rules for moving them between states, on sqlite or PostgreSQL.

States: ``submitting`` (row written before the API call) -> ``running`` (Speechmatics gave us a job id) ->
``done`` | ``rejected`` | ``expired`` | ``deleted``; ``submit_failed`` when no job was ever created. Every
update names the states it may start from, so a terminal state never moves back, whichever process gets
there first. Notifications for a job id we do not know yet are kept in ``early_notifications`` and applied
in the same transaction that records the id, so none is dropped.

Each method is one short transaction. sqlite runs in WAL mode with ``BEGIN IMMEDIATE`` (a writer takes the
write lock before reading, so two writers never deadlock on an upgrade) and a busy timeout; PostgreSQL
serialises work on one job id with a transaction-scoped advisory lock and hands out cronjob leases with
``FOR UPDATE SKIP LOCKED``. Lock timeouts, deadlocks and lost connections surface as ``StoreUnavailable``,
which the server answers with 503 so that Speechmatics tries again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

OPEN_STATES = ("submitting", "running")
TERMINAL_STATES = ("done", "rejected", "expired", "deleted", "submit_failed")
FAILURE_NOTIFICATIONS = ("error", "fetch_error", "trim_error")
# How long a writer waits for a lock before giving up with StoreUnavailable (the server's 503): long enough
# for any of our short transactions, short enough that Speechmatics' own request does not time out first.
LOCK_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_SECONDS = 30

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        reference   TEXT PRIMARY KEY,
        job_id      TEXT UNIQUE,
        audio       TEXT NOT NULL,
        status      TEXT NOT NULL,
        transcript  TEXT,
        error       TEXT,
        created_at  DOUBLE PRECISION NOT NULL,
        updated_at  DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION
    );
    CREATE INDEX jobs_by_status ON jobs (status, updated_at);
    CREATE TABLE early_notifications (
        job_id      TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        transcript  TEXT,
        error       TEXT,
        received_at DOUBLE PRECISION NOT NULL
    );
    """,
)


class StoreUnavailable(Exception):
    """The database is busy, locked or unreachable right now; the same call may succeed later."""


class StoreConfigError(Exception):
    """DATABASE_URL cannot be used (bad path, unreachable host, wrong password)."""


@dataclass(frozen=True)
class Job:
    reference: str
    job_id: str | None
    audio: str
    status: str
    transcript: str | None
    error: str | None
    created_at: float
    updated_at: float

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_STATES

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    def lock_job_id(self, job_id: str) -> None: ...
    rowcount: int


def open_store(database_url: str) -> JobStore:
    """Connect, create or migrate the schema, and fail early with StoreConfigError if that is impossible."""
    scheme = urlsplit(database_url).scheme
    backend: Backend = SqliteBackend(database_url) if scheme == "sqlite" else PostgresBackend(database_url)
    backend.connection()  # raises StoreConfigError, naming DATABASE_URL, before anything is written
    store = JobStore(backend)
    store.migrate()
    return store


class JobStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- schema ---------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the migrations this database has not seen, under a lock so concurrent starts are safe."""
        with self.backend.transaction(schema_lock=True) as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = tx.execute("SELECT MAX(version) AS version FROM schema_version")
            current = rows[0]["version"] or 0
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            return len(MIGRATIONS)

    # -- client.py ------------------------------------------------------------------------------------
    def add_submission(self, reference: str, audio: str) -> None:
        """Record the intent to submit before anything is sent, so a crash can never lose a billed job."""
        now = time.time()
        with self.backend.transaction() as tx:
            tx.execute("INSERT INTO jobs (reference, audio, status, created_at, updated_at) "
                       "VALUES (?, ?, 'submitting', ?, ?)", (reference, audio, now, now))

    def record_submitted(self, reference: str, job_id: str) -> Job | None:
        """Attach the Speechmatics job id, then apply any notification that arrived before it. Returns the
        job, or None if `reference` is not ours or already belongs to another job id."""
        with self.backend.transaction() as tx:
            tx.lock_job_id(job_id)
            self._attach(tx, reference, job_id)
            rows = tx.execute("SELECT * FROM jobs WHERE reference = ? AND job_id = ?", (reference, job_id))
            return Job.from_row(rows[0]) if rows else None

    def record_submit_failed(self, reference: str, error: str) -> bool:
        return self._update_open("reference", reference, "submit_failed", error=error,
                                 from_states=("submitting",))

    # -- server.py ------------------------------------------------------------------------------------
    def record_notification(self, job_id: str, status: str, transcript: str | None = None,
                            error: str | None = None, reference: str | None = None) -> str:
        """Apply one notification; the answer (for the log) is what happened: done, rejected, duplicate,
        waiting (success without a transcript) or kept (job id not recorded yet). A notification that beat
        client.py to recording the id is joined to its row by `reference` (from `tracking.reference`)."""
        with self.backend.transaction() as tx:
            tx.lock_job_id(job_id)
            rows = tx.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,))
            if not rows and reference and self._attach(tx, reference, job_id):
                rows = tx.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,))
            if not rows:
                # A later notification that brought the transcript replaces one that did not.
                tx.execute("INSERT INTO early_notifications (job_id, status, transcript, error, received_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, "
                           "transcript = excluded.transcript, error = excluded.error, "
                           "received_at = excluded.received_at WHERE early_notifications.transcript IS NULL",
                           (job_id, status, transcript, error, time.time()))
                return "kept"
            if rows[0]["status"] in TERMINAL_STATES:
                return "duplicate"
            return self._apply(tx, job_id, status, transcript, error)

    # -- cronjob.py -----------------------------------------------------------------------------------
    def claim_open_jobs(self, older_than: float, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` unfinished jobs last touched before `older_than`, skipping jobs another
        cronjob pass holds; a pass that dies simply lets its leases run out."""
        now = time.time()
        sql = ("UPDATE jobs SET lease_until = ? WHERE reference IN ("  # noqa: S608 (skip_locked is a constant)
               " SELECT reference FROM jobs WHERE status IN ('submitting', 'running') AND updated_at < ?"
               " AND (lease_until IS NULL OR lease_until < ?) ORDER BY created_at LIMIT ?"
               f" {self.backend.skip_locked}) RETURNING *")
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (now + lease_seconds, older_than, now, limit))
        return sorted((Job.from_row(row) for row in rows), key=lambda job: job.created_at)

    def lease(self, reference: str, lease_seconds: float) -> bool:
        """Take one job's lease (for repairs); False if another pass holds it."""
        now = time.time()
        with self.backend.transaction() as tx:
            tx.execute("UPDATE jobs SET lease_until = ? WHERE reference = ? AND (lease_until IS NULL OR "
                       "lease_until < ?)", (now + lease_seconds, reference, now))
            return tx.rowcount == 1

    def touch(self, reference: str) -> bool:
        """Show that the client submitting this job is alive, so cronjob.py leaves the row alone. False
        if the row is no longer `submitting`: the client must then give up rather than create a job."""
        with self.backend.transaction() as tx:
            tx.execute("UPDATE jobs SET updated_at = ? WHERE reference = ? AND status = 'submitting'",
                       (time.time(), reference))
            return tx.rowcount == 1

    def release(self, reference: str) -> None:
        with self.backend.transaction() as tx:
            tx.execute("UPDATE jobs SET lease_until = NULL WHERE reference = ?", (reference,))

    def finish(self, job_id: str, status: str, transcript: str | None = None, error: str | None = None) -> bool:
        """Move an unfinished job to a final state; False if it was already final."""
        return self._update_open("job_id", job_id, status, transcript=transcript, error=error)

    def set_transcript(self, job_id: str, transcript: str | None, error: str | None = None) -> None:
        """Point a done job at its repaired transcript file, or record that it cannot be repaired."""
        with self.backend.transaction() as tx:
            tx.execute("UPDATE jobs SET transcript = ?, error = ?, updated_at = ? WHERE job_id = ? AND "
                       "status = 'done'", (transcript, error, time.time(), job_id))

    def forget_early_notifications(self, received_before: float) -> int:
        """Drop notifications never claimed by any row (jobs of another system on the same URL, say)."""
        with self.backend.transaction() as tx:
            tx.execute("DELETE FROM early_notifications WHERE received_at < ?", (received_before,))
            return tx.rowcount

    # -- reading --------------------------------------------------------------------------------------
    def find(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))

    def find_by_reference(self, reference: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE reference = ?", (reference,))

    def jobs(self, status: str | None = None, created_after: float = 0.0) -> list[Job]:
        sql, params = "SELECT * FROM jobs WHERE created_at > ?", (created_after,)
        if status:
            sql, params = sql + " AND status = ?", (created_after, status)
        with self.backend.transaction(write=False) as tx:
            return [Job.from_row(row) for row in tx.execute(sql + " ORDER BY created_at", params)]

    def ping(self) -> None:
        with self.backend.transaction(write=False) as tx:
            tx.execute("SELECT 1 AS alive")

    def early_notifications(self) -> list[dict[str, Any]]:
        with self.backend.transaction(write=False) as tx:
            return tx.execute("SELECT * FROM early_notifications ORDER BY received_at")

    # -- the state rules ------------------------------------------------------------------------------
    def _apply(self, tx: Transaction, job_id: str, status: str, transcript: str | None,
               error: str | None) -> str:
        if status == "success" and transcript:
            tx.execute("UPDATE jobs SET status = 'done', transcript = ?, error = NULL, updated_at = ?, "
                       "lease_until = NULL WHERE job_id = ? AND status IN ('submitting', 'running')",
                       (transcript, time.time(), job_id))
            return "done"
        if status in FAILURE_NOTIFICATIONS:
            tx.execute("UPDATE jobs SET status = 'rejected', error = ?, updated_at = ?, lease_until = NULL "
                       "WHERE job_id = ? AND status IN ('submitting', 'running')",
                       (error or f"Speechmatics reported {status}", time.time(), job_id))
            return "rejected"
        return "waiting"

    def _attach(self, tx: Transaction, reference: str, job_id: str) -> bool:
        """Give a `submitting` row its job id (from client.py, cronjob.py's listing or a notification's
        `tracking.reference`), then apply whatever notification was kept for that id. False if the row is
        not ours to attach."""
        tx.execute("UPDATE jobs SET job_id = ?, status = 'running', updated_at = ?, lease_until = NULL "
                   "WHERE reference = ? AND status = 'submitting'", (job_id, time.time(), reference))
        if not tx.rowcount:
            return False
        self._apply_early_notification(tx, job_id)
        return True

    def _apply_early_notification(self, tx: Transaction, job_id: str) -> None:
        early = tx.execute("SELECT * FROM early_notifications WHERE job_id = ?", (job_id,))
        if early:
            note = early[0]
            self._apply(tx, job_id, note["status"], note["transcript"], note["error"])
            tx.execute("DELETE FROM early_notifications WHERE job_id = ?", (job_id,))

    def _update_open(self, key: str, value: str, status: str, transcript: str | None = None,
                     error: str | None = None, from_states: Sequence[str] = OPEN_STATES) -> bool:
        marks = ", ".join("?" for _ in from_states)
        with self.backend.transaction() as tx:
            tx.execute(f"UPDATE jobs SET status = ?, transcript = COALESCE(?, transcript), error = ?, "  # noqa: S608
                       f"updated_at = ?, lease_until = NULL WHERE {key} = ? AND status IN ({marks})",
                       (status, transcript, error, time.time(), value, *from_states))
            return tx.rowcount == 1

    def _one(self, sql: str, params: Sequence[Any]) -> Job | None:
        with self.backend.transaction(write=False) as tx:
            rows = tx.execute(sql, params)
        return Job.from_row(rows[0]) if rows else None


# -- backends -----------------------------------------------------------------------------------------
class Backend(Protocol):
    skip_locked: str

    def connection(self) -> Any: ...

    def transaction(self, write: bool = True, schema_lock: bool = False) -> contextlib.AbstractContextManager[
        Transaction]: ...


class _PerThreadConnections:
    """One connection per thread and process: cheap to reuse, never shared across a fork."""

    def __init__(self) -> None:
        self._local = threading.local()

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid() or self._is_broken(conn):
            conn = self._local.conn = self.connect()
            self._local.pid = os.getpid()
        return conn

    def forget(self) -> None:
        self._local.conn = None

    def connect(self) -> Any:
        raise NotImplementedError

    def _is_broken(self, conn: Any) -> bool:
        return False


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        rows = [dict(row) for row in cursor.fetchall()] if cursor.description else []
        self.rowcount = cursor.rowcount
        return rows

    def lock_job_id(self, job_id: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this transaction the only writer."""


class SqliteBackend(_PerThreadConnections):
    skip_locked = ""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.path = Path(unquote(database_url[len("sqlite:///"):]))
        if not self.path.parent.is_dir():
            raise StoreConfigError(f"DATABASE_URL: directory {self.path.parent} does not exist")

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a 2xx promises the commit survives a power cut
        except sqlite3.Error as error:
            raise StoreConfigError(f"DATABASE_URL: cannot open {self.path}: {error}") from error
        return conn

    @contextlib.contextmanager
    def transaction(self, write: bool = True, schema_lock: bool = False) -> Iterator[_SqliteTransaction]:
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTransaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(str(error)) from error


class _PostgresTransaction:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.cursor.execute(sql.replace("?", "%s"), params)
        self.rowcount = self.cursor.rowcount
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def lock_job_id(self, job_id: str) -> None:
        """Serialise everything done to one job id, so a notification and the id's recording never miss
        each other under READ COMMITTED."""
        self.cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (job_id,))


class PostgresBackend(_PerThreadConnections):
    skip_locked = "FOR UPDATE SKIP LOCKED"
    SCHEMA_LOCK = 4_711_2024

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.database_url = database_url

    def connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        try:
            conn = psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row, connect_timeout=10,
                                   keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                                   tcp_user_timeout=30_000)  # a dead server is noticed in seconds, not minutes
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_SECONDS}s'")
            return conn
        except psycopg.OperationalError as error:
            first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise StoreConfigError(f"DATABASE_URL: cannot connect: {first_line}") from error

    def _is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    @contextlib.contextmanager
    def transaction(self, write: bool = True, schema_lock: bool = False) -> Iterator[_PostgresTransaction]:
        import psycopg

        try:
            conn = self.connection()
        except StoreConfigError as error:
            raise StoreUnavailable(str(error)) from error
        try:
            with conn.transaction(), conn.cursor() as cursor:
                if schema_lock:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.SCHEMA_LOCK,))
                yield _PostgresTransaction(cursor)
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled, psycopg.OperationalError,
                psycopg.InterfaceError) as error:
            if conn.broken or conn.closed:
                self.forget()
            raise StoreUnavailable(str(error).strip().splitlines()[0] if str(error) else repr(error)) from error
