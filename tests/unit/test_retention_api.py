"""`SpeechmaticsAPI.delete_job`: what retention.py relies on, against httpx.MockTransport."""

from __future__ import annotations

import httpx
import pytest

from notification_flow.api import ApiError
from tests.unit.test_api import Recorder, job_json, make_api


def test_delete_is_not_forced_unless_asked_and_answers_true_once_deleted() -> None:
    recorder = Recorder(job_json(status="deleted"))
    api = make_api(recorder)
    assert api.delete_job("abcdefgh12") is True
    assert api.delete_job("abcdefgh12", force=True) is True
    first, second = recorder.requests
    assert (first.method, first.url.path, first.url.params.get("force")) == ("DELETE", "/v2/jobs/abcdefgh12", None)
    assert second.url.params.get("force") == "true"


@pytest.mark.parametrize("status", [404, 410])
def test_a_job_already_gone_is_no_error(status: int) -> None:
    assert make_api(Recorder(httpx.Response(status, json={"error": "gone"}))).delete_job("abcdefgh12") is False


def test_a_running_job_is_refused_without_force_and_not_retried() -> None:
    recorder = Recorder(httpx.Response(423, json={"error": "Resource Locked"}))
    with pytest.raises(ApiError) as refused:
        make_api(recorder).delete_job("abcdefgh12")
    assert refused.value.status == 423 and len(recorder.requests) == 1


def test_a_500_is_retried_within_the_one_budget_then_fails() -> None:
    recorder = Recorder(httpx.Response(500, json={"error": "boom"}))
    with pytest.raises(ApiError):
        make_api(recorder, attempts=3).delete_job("abcdefgh12")
    assert len(recorder.requests) == 3
