"""Fixtures: the emulator in-process on a free port, each test's own database on both backends, and a real
S3-compatible store (SeaweedFS, once per worker) for the tests of TRANSCRIPTS_URL.

PostgreSQL runs need a server: TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test). Each
test gets a fresh schema, dropped afterwards, so runs never see each other's rows. Without a reachable
server the PostgreSQL runs are skipped, with the reason.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator, EmulatorOptions
from seaweed import SeaweedFS
from tests.integration.support import API_KEY, Stack, fresh_schema, postgres_problem

postgres_problem_once = functools.cache(postgres_problem)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    problem = postgres_problem_once()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)  # CI has PostgreSQL: a skip there would hide a broken backend
        pytest.skip(problem)
    with fresh_schema() as url:
        yield url


def emulator_options(**overrides: object) -> EmulatorOptions:
    options: dict[str, object] = {"api_key": API_KEY, "processing_seconds": 0.3,
                                  "notify_retry_delays": (0.2, 0.4, 0.6), "notify_timeout": 10.0, "seed": 7}
    options.update(overrides)
    return EmulatorOptions(**options)  # type: ignore[arg-type]


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator, with any options a test names in @pytest.mark.emulator(...)."""
    marker = request.node.get_closest_marker("emulator")
    with Emulator(emulator_options(**(marker.kwargs if marker else {}))) as running:
        yield running


@pytest.fixture
def stack(tmp_path: Path, emulator: Emulator, database_url: str) -> Iterator[Stack]:
    """Everything but the server, which each test starts when it needs it."""
    stack = Stack(tmp=tmp_path, emulator=emulator, database_url=database_url)
    try:
        yield stack
    finally:
        stack.stop_server()


@pytest.fixture
def served(stack: Stack) -> Stack:
    stack.start_server()
    return stack


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One real S3-compatible server per xdist worker (it takes seconds to start); each test its own bucket."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as store:
        yield store


@pytest.fixture
def s3_stack(stack: Stack, seaweedfs: SeaweedFS) -> Stack:
    """`stack`, storing transcripts in a bucket of its own on SeaweedFS (TRANSCRIPTS_DIR is then the spool)."""
    bucket = seaweedfs.new_bucket(f"t-{uuid.uuid4().hex[:24]}")
    stack.storage = {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **seaweedfs.env()}
    return stack
