"""Who may notify, as an attacker meets it: a token proves one job, and only the current secrets make one."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from notification_flow import db as db_module
from notification_flow.auth import job_token
from notification_flow.db import migrate, open_database
from notification_flow.jobs import open_store
from tests.integration.support import SECRET, Stack, create_job, transcript_files, wait_for

PREVIOUS = "previous-webhook-secret-0123456789"


def post(stack: Stack, job_id: str, authorization: str, body: bytes) -> requests.Response:
    return requests.post(stack.webhook_url, params={"id": job_id, "status": "success"}, data=body, timeout=30,
                         headers={"Authorization": authorization, "Content-Type": "application/json"})


def test_only_tokens_of_the_current_and_previous_secret_are_accepted(stack: Stack, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The version of 2026-11-30 put `Bearer <WEBHOOK_SECRET>` into every job's `auth_headers`, readable by
    anyone who reads the account's jobs. After the upgrade that header is refused even for the jobs it was
    made for (cronjob.py recovers them), and so is any token not signed by WEBHOOK_SECRET or
    WEBHOOK_SECRET_PREVIOUS."""
    with monkeypatch.context() as before_the_upgrade:  # the schema of the version that sent the shared secret
        before_the_upgrade.setattr(db_module, "MIGRATIONS", db_module.MIGRATIONS[:3])
        migrate(open_database(stack.database_url))
    stack.emulator.set_faults(drop_fraction=1.0)
    old = open_store(stack.database_url, migrate_schema=False)
    reference = uuid.uuid4().hex
    old.add_submission(reference, "example.wav")
    job_id = create_job(stack, reference)
    old.record_created(reference, job_id)
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message="the job to finish")
    body = stack.emulator.transcript_bytes(job_id)

    stack.start_server(WEBHOOK_SECRET_PREVIOUS=PREVIOUS)  # migrates the database: the upgrade
    for authorization in (f"Bearer {SECRET}", f"Bearer {PREVIOUS}",
                          f"Bearer {job_token('some-other-secret-0123456789', reference)}"):
        assert post(stack, job_id, authorization, body).status_code == 401, authorization
    assert transcript_files(stack.transcripts) == []
    assert stack.store().find(job_id).status == "running"
    assert post(stack, job_id, f"Bearer {job_token(PREVIOUS, reference)}", body).status_code == 200
    assert stack.store().find(job_id).status == "done"
