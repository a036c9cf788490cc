"""Every routine query reads an index range on PostgreSQL too (sqlite's twin is in tests/unit/test_history.py).

`EXPLAIN` runs with sequential scans priced out (`enable_seqscan = off`), so a `Seq Scan` in a plan means
no index can serve the query at all, not merely that the table is small."""

from __future__ import annotations

import pytest

from notification_flow.jobs import JobStore, open_store
from tests.query_plans import full_scans, seed


@pytest.fixture
def postgres_store(database_url: str) -> JobStore:
    if database_url.startswith("sqlite"):
        pytest.skip("sqlite's plans are checked in tests/unit/test_history.py")
    return open_store(database_url)


def test_every_routine_query_reads_an_index_range_not_the_table(postgres_store: JobStore) -> None:
    store = postgres_store
    seed(store, 2_000)
    with store.database.transaction() as tx:
        tx.execute("ANALYZE jobs")
    assert full_scans(store) == []


def test_the_check_sees_a_sequential_scan_where_no_index_serves(postgres_store: JobStore) -> None:
    store = postgres_store
    seed(store, 200)
    with store.database.transaction() as tx:
        for index in ("jobs_by_check", "jobs_by_created", "jobs_by_status_created"):
            tx.execute(f"DROP INDEX {index}")
    assert len(full_scans(store)) >= 3
