"""Fixtures: the emulator in-process on a free port, and each test's own database on both backends.

PostgreSQL runs need a server: TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test). Each
test gets a fresh schema, dropped afterwards, so runs never see each other's rows. Without a reachable
server the PostgreSQL runs are skipped, with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from emulator import Emulator, EmulatorConfig
from tests.helpers import API_KEY, Stack

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_postgres_problem: list[str] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None if it can (checked once per run)."""
    if not _postgres_problem:
        try:
            import psycopg

            with psycopg.connect(POSTGRES_URL, connect_timeout=3):
                _postgres_problem.append("")
        except Exception as error:
            _postgres_problem.append(f"no PostgreSQL at {POSTGRES_URL}: {str(error).strip().splitlines()[-1]}")
    return _postgres_problem[0] or None


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    problem = postgres_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)  # CI has PostgreSQL: a skip there would hide a broken backend
        pytest.skip(problem)
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def emulator_config(**overrides: object) -> EmulatorConfig:
    settings: dict[str, object] = {"api_key": API_KEY, "processing_seconds": 0.3,
                                   "notify_retry_delays": (0.2, 0.4, 0.6), "notify_timeout": 10.0, "seed": 7}
    settings.update(overrides)
    return EmulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator, with any options a test names in @pytest.mark.emulator(...)."""
    marker = request.node.get_closest_marker("emulator")
    with Emulator(emulator_config(**(marker.kwargs if marker else {}))) as running:
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
