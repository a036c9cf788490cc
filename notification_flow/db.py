"""Database connections and transactions, for sqlite and PostgreSQL alike; the job rules live in `jobs.py`.

Queries are written once, with `$1, $2, ...` placeholders: PostgreSQL's own (psycopg's raw cursor passes them
through untouched) and, to sqlite, named parameters, so one text serves both and none is ever rewritten.

sqlite runs in WAL mode with ``BEGIN IMMEDIATE`` (a writer takes the write lock before reading, so two writers
never deadlock on an upgrade) and a busy timeout. PostgreSQL serialises recording one job id with a
transaction-scoped advisory lock. Lock timeouts, deadlocks and lost connections surface as
``StoreUnavailable``, which the server answers with 503 so that Speechmatics tries again. Connections are
opened lazily, one per thread and process, so a gunicorn worker boots even while the database is down.

Every time the state rules compare comes from the database's clock (`Transaction.now`), never a host's own,
so several hosts whose clocks disagree still judge liveness and leases alike. (sqlite's clock is its host's,
and every process using one sqlite file runs on that host: the same thing.)
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from notification_flow.schema import MIGRATIONS

# How long a writer waits for a lock before giving up with StoreUnavailable (the server's 503): long enough
# for any of our short transactions, short enough that Speechmatics' own request does not time out first.
LOCK_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_SECONDS = 30
Row = dict[str, Any]


class StoreUnavailable(Exception):
    """The database is busy, locked or unreachable right now; the same call may succeed later."""


class StoreConfigError(Exception):
    """DATABASE_URL cannot be used (bad path, unreachable host, unknown database)."""


class Transaction:
    """One transaction on either backend; every time it writes is one reading of the database's clock."""

    def __init__(self, database: Database, cursor: Any) -> None:
        self.database, self.cursor = database, cursor
        self.rowcount = 0
        self._now: float | None = None

    def execute(self, sql: str, *params: Any) -> list[Row]:
        self.cursor.execute(sql, self.database.parameters(params))
        self.rowcount = self.cursor.rowcount
        return [dict(row) for row in self.cursor.fetchall()] if self.cursor.description else []

    def now(self) -> float:
        """The database's clock, in epoch seconds, read once per transaction."""
        if self._now is None:
            self._now = float(self.execute(f"SELECT {self.database.CLOCK} AS now")[0]["now"])
        return self._now

    def lock_job_id(self, job_id: str) -> None:
        """Serialise the recording of one job id, so two rows claiming it under PostgreSQL's READ COMMITTED
        never both see it free (sqlite's write transaction already excludes every other writer)."""
        if self.database.JOB_ID_LOCK:
            self.execute(self.database.JOB_ID_LOCK, job_id)


class Database:
    """A backend: one connection per thread and process, cheap to reuse, never shared across a fork. The
    backends differ only in the values below, how they connect, and which errors mean "try again later"."""

    CLOCK = ""  # the SQL expression of the time now, in epoch seconds
    BEGIN_WRITE = "BEGIN"  # how a transaction that will write begins
    SCHEMA_LOCK = ""  # a statement that makes migrations wait for each other, where BEGIN does not
    JOB_ID_LOCK = ""  # a statement that serialises recording one job id, where BEGIN does not
    SCHEMA_PRESENT = ""  # a query with a row if migrate has made the schema
    skip_locked = ""  # appended to the lease query where the backend can skip rows others hold
    UNAVAILABLE: tuple[type[Exception], ...] = ()  # errors that mean busy, locked or unreachable right now

    def __init__(self) -> None:
        self._local = threading.local()

    def connect(self) -> Any:
        raise NotImplementedError

    def parameters(self, params: tuple[Any, ...]) -> Any:
        return params

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid() or self._is_broken(conn):
            conn = self._local.conn = self.connect()
            self._local.pid = os.getpid()
        return conn

    def _is_broken(self, conn: Any) -> bool:
        return False

    @contextlib.contextmanager
    def transaction(self, write: bool = True, schema_lock: bool = False) -> Iterator[Transaction]:
        """BEGIN, the caller's statements, COMMIT; ROLLBACK on any error. Busy, locked or lost is StoreUnavailable."""
        try:
            conn = self.connection()
        except StoreConfigError as error:
            raise StoreUnavailable(str(error)) from error
        cursor = conn.cursor()
        try:
            cursor.execute(self.BEGIN_WRITE if write else "BEGIN")
            if schema_lock and self.SCHEMA_LOCK:
                cursor.execute(self.SCHEMA_LOCK)
            try:
                yield Transaction(self, cursor)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        except self.UNAVAILABLE as error:
            with contextlib.suppress(*self.UNAVAILABLE):  # a COMMIT refused leaves the transaction open
                cursor.execute("ROLLBACK")
            if self._is_broken(conn):
                self._local.conn = None
            raise StoreUnavailable(_first_line(error)) from error


def open_database(database_url: str) -> Database:
    """The backend for DATABASE_URL, without connecting: `migrate` or the first query connects."""
    if urlsplit(database_url).scheme == "sqlite":
        return SqliteDatabase(database_url)
    return PostgresDatabase(database_url)


def database_exists(database_url: str) -> bool:
    """Whether DATABASE_URL names a job database already made (by migrate), found without creating anything:
    a missing sqlite file is not created; PostgreSQL is asked whether the schema's table exists.
    Raises StoreConfigError if DATABASE_URL is wrong, StoreUnavailable if it cannot be reached now."""
    database = open_database(database_url)
    if isinstance(database, SqliteDatabase) and not database.path.is_file():
        return False
    database.connect()  # a wrong DATABASE_URL is StoreConfigError here; a transaction would say unavailable
    with database.transaction(write=False) as tx:
        return bool(tx.execute(database.SCHEMA_PRESENT))


def describe_database(database_url: str) -> str:
    """Where DATABASE_URL points, for messages: the sqlite file, or PostgreSQL's host, port and database name;
    never the password."""
    if urlsplit(database_url).scheme == "sqlite":
        return str(Path(unquote(database_url[len("sqlite:///"):])).resolve())
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(database_url)
    except Exception:  # an unparsable URL: say no more than its scheme
        return "PostgreSQL (DATABASE_URL could not be parsed)"
    host = info.get("host") or info.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    name = info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or "(default)"
    return f"PostgreSQL host {host} port {port} database {name}"


def migrate(database: Database) -> int:
    """Apply the migrations this database has not seen, under a lock so that concurrent starts are safe.
    Raises StoreConfigError, naming DATABASE_URL, if it is wrong; StoreUnavailable if it cannot be reached now."""
    database.connect()
    with database.transaction(schema_lock=True) as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = tx.execute("SELECT MAX(version) AS version FROM schema_version")[0]["version"] or 0
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                tx.execute(statement)
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
    return len(MIGRATIONS)


class SqliteDatabase(Database):
    # julianday has millisecond precision and exists in every sqlite Python ships with.
    CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"
    BEGIN_WRITE = "BEGIN IMMEDIATE"  # the write lock before reading: two writers never deadlock on an upgrade
    SCHEMA_PRESENT = "SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"
    UNAVAILABLE = (sqlite3.OperationalError,)

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.path = Path(unquote(database_url[len("sqlite:///"):]))
        self.opened: tuple[int, int] | None = None  # (device, inode) of the file this process opened first

    def connection(self) -> sqlite3.Connection:
        """Refused once the path no longer names the file this process opened: commits into a deleted file
        reach nobody, and a new file at the path has no schema. A restart opens whatever is there then."""
        if self.opened is not None and _identity(self.path) != self.opened:
            raise StoreUnavailable(f"DATABASE_URL: {self.path} was deleted or replaced while in use; restart")
        conn = super().connection()
        self.opened = self.opened or _identity(self.path)
        return conn

    def connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise StoreConfigError(f"DATABASE_URL: directory {self.path.parent} does not exist")
        try:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a 2xx promises the commit survives a power cut
        except sqlite3.Error as error:
            raise StoreConfigError(f"DATABASE_URL: cannot open {self.path}: {error}") from error
        return conn

    def parameters(self, params: tuple[Any, ...]) -> dict[str, Any]:
        """`$1, $2, ...` are named parameters to sqlite, called "1", "2", ..."""
        return {str(number): value for number, value in enumerate(params, start=1)}


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class PostgresDatabase(Database):
    """psycopg is imported only here, when a PostgreSQL database is opened: a sqlite deployment never loads it."""

    CLOCK = "extract(epoch FROM clock_timestamp())::float8"
    SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(47112024)"
    JOB_ID_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"
    SCHEMA_PRESENT = "SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL"
    skip_locked = "FOR UPDATE SKIP LOCKED"

    def __init__(self, database_url: str) -> None:
        import psycopg

        super().__init__()
        self.database_url = database_url
        self.UNAVAILABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                            psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled, psycopg.OperationalError,
                            psycopg.InterfaceError)

    def connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        try:
            conn = psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row,
                                   cursor_factory=psycopg.RawCursor, connect_timeout=10, keepalives=1,
                                   keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                                   tcp_user_timeout=30_000)  # a dead server is noticed in seconds, not minutes
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_SECONDS}s'")
            return conn
        except psycopg.Error as error:
            problem = f"DATABASE_URL: cannot connect to {describe_database(self.database_url)}: {_first_line(error)}"
            if _BAD_SETTING.search(str(error)):
                raise StoreConfigError(problem) from error
            raise StoreUnavailable(problem) from error  # down, unreachable or no such database yet: try again

    def _is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)


# What libpq says when the URL itself is wrong (refused before connecting) or the server refuses who we are.
_BAD_SETTING = re.compile(r"connection is bad|invalid|authentication|password|role \"[^\"]*\" does not exist|pg_hba")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
