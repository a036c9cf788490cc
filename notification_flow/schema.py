"""The schema, as a list of migrations: each one a tuple of statements, applied in order and never edited.

A database records the migrations it has seen in `schema_version`; `db.migrate` applies the rest under a lock.
Statements are listed one by one, so nothing splits SQL text on `;`. Times are epoch seconds from the
database's clock.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            reference   TEXT PRIMARY KEY,
            job_id      TEXT UNIQUE,
            audio       TEXT NOT NULL,
            status      TEXT NOT NULL,
            transcript  TEXT,
            error       TEXT,
            created_at  DOUBLE PRECISION NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL,
            lease_until DOUBLE PRECISION
        )""",
        "CREATE INDEX jobs_by_status ON jobs (status, updated_at)",
        """CREATE TABLE early_notifications (
            job_id      TEXT PRIMARY KEY,
            status      TEXT NOT NULL,
            transcript  TEXT,
            error       TEXT,
            received_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    (  # history: every routine query an index range, and the repair sweep's cursor and queue
        "CREATE INDEX jobs_by_status_created ON jobs (status, created_at, reference)",
        "CREATE INDEX jobs_by_created ON jobs (created_at, reference)",
        "CREATE INDEX early_notifications_by_received ON early_notifications (received_at)",
        """CREATE TABLE reconciler_state (
            name        TEXT PRIMARY KEY,
            pass_at     DOUBLE PRECISION NOT NULL,
            created_at  DOUBLE PRECISION,
            reference   TEXT
        )""",
        """CREATE TABLE repair_queue (
            reference   TEXT PRIMARY KEY,
            due_at      DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX repair_queue_by_due ON repair_queue (due_at)",
    ),
    (  # operations: the reconciler's last pass, for the server's /metrics (jobs by age use the index above)
        """CREATE TABLE reconciler_pass (
            id            INTEGER PRIMARY KEY,
            ended_at      DOUBLE PRECISION NOT NULL,
            duration      DOUBLE PRECISION NOT NULL,
            checked       INTEGER NOT NULL,
            recovered     INTEGER NOT NULL,
            still_running INTEGER NOT NULL,
            failed        INTEGER NOT NULL
        )""",
    ),
    (
        # When per-job notification tokens began here: the last row created before. Only rows up to it may
        # still be notified with the shared `Bearer <WEBHOOK_SECRET>` (see auth.py); none on a fresh database.
        "CREATE TABLE per_job_tokens (introduced_at DOUBLE PRECISION NOT NULL)",
        "INSERT INTO per_job_tokens (introduced_at) SELECT COALESCE(MAX(created_at), 0) FROM jobs",
    ),
    (
        # The repair sweep of the time read every done job's id and file once a day: with them in the index, it
        # read the index alone, not a table page per job scattered through a year's rows. It served everything
        # the narrower index did, so that one went (the last migration brings it back).
        "CREATE INDEX jobs_by_status_created_file ON jobs (status, created_at, reference, job_id, transcript)",
        "DROP INDEX jobs_by_status_created",
    ),
    (  # when the repair sweep under way began: it must reach the newest job a day later (reconcile.py)
        "ALTER TABLE reconciler_state ADD COLUMN started_at DOUBLE PRECISION",
    ),
    (  # one credential: per-job tokens only, so nothing needs to know when they began (auth.py)
        "DROP TABLE per_job_tokens",
    ),
    (  # every authenticated notification names a row with its job id: nothing waits for an id (jobs.py)
        "DROP TABLE early_notifications",
    ),
    (
        # The repair sweep (reconcile.py): each done job records when its file was last checked; a pass reads
        # those checked longest ago, through (status, checked_at). 0: never checked; NULL: never again (past
        # the API's retention, or recorded lost). The cursor, its pacing and the repair queue go, and the
        # index that carried the file names for the old sweep gives way to the narrower one.
        "ALTER TABLE jobs ADD COLUMN checked_at DOUBLE PRECISION DEFAULT 0",
        "CREATE INDEX jobs_by_check ON jobs (status, checked_at)",
        "CREATE INDEX jobs_by_status_created ON jobs (status, created_at, reference)",
        "DROP INDEX jobs_by_status_created_file",
        "DROP TABLE repair_queue",
        "DROP TABLE reconciler_state",
        # the last pass: repairs counted apart from recoveries, and whether it ran to its end
        "ALTER TABLE reconciler_pass ADD COLUMN repaired INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE reconciler_pass ADD COLUMN complete INTEGER NOT NULL DEFAULT 1",
    ),
    (
        # Retention (retention.py). A deletion at Speechmatics wished in the transaction that stored the job's
        # transcript waits in `remote_deletions` until it is done (a small table: only the pending ones); the
        # row records when it was done. A transcript the repair sweep found gone, with nothing left to fetch it
        # from, is recorded lost; purges read finished rows by (status, created_at), an index already there.
        "ALTER TABLE jobs ADD COLUMN remote_deleted_at DOUBLE PRECISION",
        "ALTER TABLE jobs ADD COLUMN lost_at DOUBLE PRECISION",
        "CREATE INDEX jobs_by_lost ON jobs (lost_at)",
        """CREATE TABLE remote_deletions (
            reference   TEXT PRIMARY KEY,
            job_id      TEXT NOT NULL,
            wanted_at   DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX remote_deletions_by_wanted ON remote_deletions (wanted_at)",
    ),
    (
        # The hand-off's outbox (handoff.py): one event per job and final state, recorded in the move's own
        # transaction, kept after delivery (and when dead) so that it can be sent again; and deliveries counted
        # by result for /metrics.
        """CREATE TABLE handoff_events (
            id           TEXT PRIMARY KEY,
            reference    TEXT NOT NULL,
            status       TEXT NOT NULL,
            body         TEXT NOT NULL,
            state        TEXT NOT NULL,
            created_at   DOUBLE PRECISION NOT NULL,
            since        DOUBLE PRECISION NOT NULL,
            due_at       DOUBLE PRECISION NOT NULL,
            attempts     INTEGER NOT NULL,
            lease_until  DOUBLE PRECISION,
            delivered_at DOUBLE PRECISION,
            last_error   TEXT
        )""",
        "CREATE INDEX handoff_events_by_state ON handoff_events (state, due_at, created_at)",
        "CREATE INDEX handoff_events_by_reference ON handoff_events (reference, created_at)",
        "CREATE INDEX handoff_events_by_created ON handoff_events (created_at)",
        "CREATE TABLE handoff_deliveries (result TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        "INSERT INTO handoff_deliveries (result, n) VALUES ('delivered', 0), ('failed', 0), ('dead', 0)",
    ),
    (
        # issue 24: the formats stored beside the json-v2 (formats.py), "srt,txt" say, NULL for none; and what
        # Speechmatics recorded that the status does not say (notices.py), counted over a day through the index
        "ALTER TABLE jobs ADD COLUMN formats TEXT",
        "ALTER TABLE jobs ADD COLUMN notice TEXT",
        "CREATE INDEX jobs_with_notice ON jobs (created_at) WHERE notice IS NOT NULL",
    ),
)
