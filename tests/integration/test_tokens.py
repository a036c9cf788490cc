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


def held_notification(stack: Stack, job_id: str) -> str:
    held = wait_for(lambda: [h for h in stack.emulator.held() if h["job_id"] == job_id], message=job_id)
    return held[0]["key"]


def post(stack: Stack, job_id: str, authorization: str, body: bytes) -> requests.Response:
    return requests.post(stack.webhook_url, params={"id": job_id, "status": "success"}, data=body, timeout=30,
                         headers={"Authorization": authorization, "Content-Type": "application/json"})


def test_a_token_of_a_row_without_a_job_id_cannot_claim_another_job(served: Stack) -> None:
    """Two submissions whose answers were lost: both rows `submitting`, no job id. A's token, which anyone who
    reads A's config has, presented for B's id is refused and writes nothing; both real notifications then
    finish their own rows (the server asks the API which row a job belongs to)."""
    served.emulator.set_faults(hold_notifications=True)
    store = served.store()
    ids = {}
    for reference in (a := uuid.uuid4().hex, b := uuid.uuid4().hex):
        store.add_submission(reference, "example.wav")
        ids[reference] = create_job(served, reference, {"contents": ["transcript"]})
    keys = {reference: held_notification(served, job_id) for reference, job_id in ids.items()}
    before = {job.reference: job for job in store.jobs()}

    attack = post(served, ids[b], f"Bearer {job_token(SECRET, a)}", b'{"format": "2.9", "results": []}')
    assert attack.status_code == 403, attack.text
    assert transcript_files(served.transcripts) == []
    assert {job.reference: job for job in store.jobs()} == before

    for key in keys.values():
        assert served.emulator.deliver(key)["outcome"] == 200
    for reference, job_id in ids.items():
        job = store.find_by_reference(reference)
        assert (job.job_id, job.status) == (job_id, "done")
        assert (served.transcripts / f"{job_id}.json").read_bytes() == served.emulator.transcript_bytes(job_id)


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
    with old.database.transaction() as tx:  # as that version recorded it: today's mover knows later columns
        tx.execute("UPDATE jobs SET job_id = $1, status = 'running' WHERE reference = $2", job_id, reference)
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
