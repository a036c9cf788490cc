"""Who may notify: the exact form of a job's token, and which forms the guard refuses (auth.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder

from notification_flow.auth import Guard, auth_header, job_token
from notification_flow.jobs import JobStore
from notification_flow.settings import load_settings

SECRET = "unit-test-secret-0123456789"
REFERENCE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def guard(tmp_path: Path, fresh_store: JobStore) -> Guard:
    settings = load_settings(environ={"WEBHOOK_SECRET": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
                                      "TRANSCRIPTS_DIR": str(tmp_path / "transcripts")})
    return Guard(settings, fresh_store, None)


def presenting(authorization: str | None) -> object:
    """A request as Flask builds it from what arrived on the wire."""
    headers = {} if authorization is None else {"Authorization": authorization}
    return EnvironBuilder(path="/webhook", method="POST", headers=headers).get_request()


def test_the_header_a_job_carries_is_one_the_guard_accepts_for_that_job(guard: Guard) -> None:
    name, value = auth_header(SECRET, REFERENCE).split(": ", 1)
    assert name == "Authorization"
    assert guard.authenticate(presenting(value)) == REFERENCE


def test_a_reference_that_cannot_be_a_row_is_refused_with_the_rule_it_breaks() -> None:
    for reference in ("", "a" * 65, "has.dots", "has space", "ünïcode"):
        with pytest.raises(ValueError, match=r"^a reference is 1 to 64 characters of A-Z a-z 0-9 _ -$"):
            job_token(SECRET, reference)


def test_a_valid_token_is_accepted_only_as_a_bearer_credential(guard: Guard) -> None:
    token = job_token(SECRET, REFERENCE)
    assert guard.authenticate(presenting(f"Bearer {token}")) == REFERENCE
    for authorization in (f"Basic {token}", f"bearer {token}", f"Bearer\t{token}", f"Bearer{token}", token,
                          "Bearer", "", f"Bearer {token} extra", f"Bearer {token}.x"):
        assert guard.authenticate(presenting(authorization)) is None, authorization
    assert guard.authenticate(presenting(None)) is None


def test_a_token_naming_a_reference_outside_ascii_is_refused_not_an_error(guard: Guard) -> None:
    signature = job_token(SECRET, REFERENCE).rsplit(".", 1)[1]
    for reference in ("ref\u00e9rence", "\u00ff" * 8):
        assert guard.authenticate(presenting(f"Bearer v1.{reference}.{signature}")) is None
