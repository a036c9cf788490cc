"""Creating jobs at the emulator the way client.py does, but with any notification settings a test needs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from tests.helpers import API_KEY, ROOT, SECRET, Stack


def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def create_job(stack: Stack, reference: str, notification: dict[str, Any] | None = None,
               audio: bytes | None = None, data_name: str = "example.wav") -> str:
    """POST /v2/jobs with our reference and a notification to our server (authenticated)."""
    config: dict[str, Any] = {"type": "transcription", "transcription_config": {"language": "en"},
                              "tracking": {"reference": reference}}
    if notification is not None:
        config["notification_config"] = [{"url": stack.webhook_url,
                                          "auth_headers": [f"Authorization: Bearer {SECRET}"], **notification}]
    data = audio if audio is not None else (ROOT / "example.wav").read_bytes()
    response = requests.post(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=30,
                             data={"config": json.dumps(config)}, files={"data_file": (data_name, data)})
    response.raise_for_status()
    return response.json()["id"]


def submit_like_client(stack: Stack, notification: dict[str, Any] | None = None, record: bool = True) -> tuple[
        str, str]:
    """Record intent, create the job, and (unless the 'client' crashes) record its id. Returns (ref, id)."""
    store = stack.store()
    reference = uuid.uuid4().hex
    store.add_submission(reference, "example.wav")
    job_id = create_job(stack, reference, notification)
    if record:
        store.record_created(reference, job_id)
    return reference, job_id


def created_jobs(stack: Stack) -> list[dict[str, Any]]:
    """Every job the emulator has, as GET /v2/jobs lists it."""
    response = requests.get(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=10)
    response.raise_for_status()
    return response.json()["jobs"]
