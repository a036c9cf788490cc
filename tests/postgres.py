"""A PostgreSQL database nobody else sees, for tests, the soak and the benchmarks: a fresh schema of the
server at TEST_DATABASE_URL, selected through `options=-csearch_path`, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_problem(base_url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used here, or None if it can."""
    try:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=3):
            return None
    except Exception as error:
        return f"no PostgreSQL at {base_url}: {str(error).strip().splitlines()[-1]}"


@contextlib.contextmanager
def fresh_schema(base_url: str = POSTGRES_URL, prefix: str = "test") -> Iterator[str]:
    """Yield a DATABASE_URL whose tables live in a new schema; the schema is dropped whatever happens."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
