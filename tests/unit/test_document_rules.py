"""What the transcript check reads of a document: the reason a job failed, and why a document is refused (jsonv2.py)."""

from __future__ import annotations

import io
import json

import pytest

from notification_flow import jsonv2

JOB_ID = "650krlru2e"


def job_fields(document: dict[str, object]) -> dict[str, str]:
    return jsonv2.read(io.BytesIO(json.dumps(document).encode()))[1]


def test_of_several_reasons_the_first_is_the_jobs_error() -> None:
    errors = [{"message": "Job rejected due to invalid audio"}, {"message": "Job rejected: too long"}]
    assert job_fields({"id": JOB_ID, "errors": errors})[jsonv2.ERROR_FIELD] == "Job rejected due to invalid audio"


def test_a_failed_delivery_reported_first_is_passed_over_for_the_reason() -> None:
    errors = [{"message": "Sending notification failed: timeout"}, {"message": "Job rejected due to invalid audio"}]
    assert job_fields({"id": JOB_ID, "errors": errors})[jsonv2.ERROR_FIELD] == "Job rejected due to invalid audio"


NOT_AN_OBJECT, NOT_JSON = r"^JSON but not an object$", r"^not valid JSON: "


@pytest.mark.parametrize(("data", "why"), [(b'{"id": "650krlru2e"', NOT_JSON), (b"\xff{}", NOT_JSON),
                                          (b'["650krlru2e"]', NOT_AN_OBJECT), (b'"650krlru2e"', NOT_AN_OBJECT)])
def test_a_refused_document_is_told_apart_from_one_that_is_not_an_object(data: bytes, why: str) -> None:
    with pytest.raises(jsonv2.NotJson, match=why):
        jsonv2.read(io.BytesIO(data))


def nested(depth: int) -> bytes:
    """An object `depth` objects deep."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_a_document_may_nest_as_deep_as_the_limit_and_no_deeper() -> None:
    assert jsonv2.read(io.BytesIO(nested(jsonv2.MAX_DEPTH)))[0] == {"a"}
    with pytest.raises(jsonv2.NotJson, match=r"^nested too deeply$"):
        jsonv2.read(io.BytesIO(nested(jsonv2.MAX_DEPTH + 1)))


def test_a_transcripts_job_is_read_from_its_job_object_alone() -> None:
    """Job fields nested under another top-level key are not the job's, and a `job` that is no object has none."""
    fields = job_fields({"format": "2.9", "job": {"id": JOB_ID}, "results": [], "tracking": {"id": "otherjob99"}})
    assert fields["id"] == JOB_ID
    assert "id" not in job_fields({"format": "2.9", "job": JOB_ID, "results": []})
