"""Unit tests of notification_flow.api against httpx.MockTransport: retries, error mapping, submit, paging, download."""

from __future__ import annotations

import bisect
import io
import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from notification_flow import api as api_module
from notification_flow import retry
from notification_flow.api import (
    PAGE_SIZE,
    AmbiguousSubmission,
    ApiError,
    JobGone,
    JobNotFound,
    SpeechmaticsAPI,
    Unauthorized,
    _one_millisecond_later,
    rejection_reason,
)
from notification_flow.retry import RetryPolicy
from tests.unit.support import FakeClock

Handler = Callable[[httpx.Request], httpx.Response]
REFERENCE = "0123456789abcdef0123456789abcdef"
DOCS_TRANSCRIPT = Path(__file__).parents[1] / "emulator" / "fixtures" / "transcript-json-v2-docs-example.json"


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(retry, "time", fake)
    return fake


class Recorder:
    """A MockTransport handler that answers from a script of responses (the last one repeats) and keeps requests."""

    def __init__(self, *answers: httpx.Response | type[Exception] | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, type):
            raise answer("scripted failure", request=request)
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def make_api(handler: Handler, attempts: int = 3, **kwargs: Any) -> SpeechmaticsAPI:
    return SpeechmaticsAPI("test-key", "https://sm.test/v2", transport=httpx.MockTransport(handler),
                           retry=RetryPolicy(attempts=attempts, base=0.001, cap=0.001), reads_per_second=1e6,
                           submits_per_second=1e6, **kwargs)


def job_json(job_id: str = "abcdefgh12", status: str = "running") -> httpx.Response:
    return httpx.Response(200, json={"job": {"id": job_id, "status": status}})


def listed(job_id: str, created_at: str = "2025-06-30T11:43:54.135Z", reference: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": job_id, "created_at": created_at, "status": "running",
                            "config": {"type": "transcription"}}
    if reference:
        item["config"]["tracking"] = {"reference": reference}
    return item


# -- reads: retries and error mapping ------------------------------------------------------------------------

def test_job_sends_wait_zero_and_the_bearer_key() -> None:
    recorder = Recorder(job_json())
    assert make_api(recorder).job("abcdefgh12") == {"id": "abcdefgh12", "status": "running"}
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == "/v2/jobs/abcdefgh12"
    assert request.url.params["wait"] == "0"
    assert request.headers["Authorization"] == "Bearer test-key"


@pytest.mark.parametrize("batch_url", ["https://sm.test", "https://sm.test/", "https://sm.test/v2/"])
def test_the_v2_prefix_is_added_once(batch_url: str) -> None:
    recorder = Recorder(job_json())
    SpeechmaticsAPI("k", batch_url, transport=httpx.MockTransport(recorder)).job("abcdefgh12")
    assert recorder.requests[0].url.path == "/v2/jobs/abcdefgh12"


def test_429_with_retry_after_is_retried_after_that_wait(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}), job_json())
    assert make_api(recorder).job("abcdefgh12")["id"] == "abcdefgh12"
    assert len(recorder.requests) == 2
    assert clock.sleeps and sum(clock.sleeps) == pytest.approx(7.0)


def test_429_without_retry_after_is_retried_with_a_short_backoff(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(429), httpx.Response(429), job_json())
    assert make_api(recorder).job("abcdefgh12")["id"] == "abcdefgh12"
    assert len(recorder.requests) == 3
    assert 0 < sum(clock.sleeps) <= 0.002 + 1e-9


def test_a_retry_after_longer_than_max_wait_ends_the_call_at_once(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "60"}), job_json())
    api = SpeechmaticsAPI("k", "https://sm.test", transport=httpx.MockTransport(recorder),
                          retry=RetryPolicy(attempts=5, max_wait=10.0), reads_per_second=1e6)
    with pytest.raises(ApiError, match="429"):
        api.job("abcdefgh12")
    assert len(recorder.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status, attempts", [(500, 1), (502, 3), (503, 4)])
def test_5xx_on_get_is_retried_then_apierror_after_attempts(status: int, attempts: int) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "unavailable"}))
    with pytest.raises(ApiError) as raised:
        make_api(recorder, attempts=attempts).job("abcdefgh12")
    assert len(recorder.requests) == attempts
    assert raised.value.status == 503
    assert f"HTTP {status}" in str(raised.value)


def test_5xx_then_success_returns_the_answer() -> None:
    recorder = Recorder(httpx.Response(502), httpx.Response(503), job_json(status="done"))
    assert make_api(recorder).job("abcdefgh12")["status"] == "done"
    assert len(recorder.requests) == 3


@pytest.mark.parametrize("status, error", [(401, Unauthorized), (403, Unauthorized), (404, JobNotFound),
                                           (410, JobGone), (400, ApiError), (422, ApiError)])
def test_client_errors_are_mapped_and_not_retried(status: int, error: type[ApiError]) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "nope", "detail": "because"}))
    with pytest.raises(error) as raised:
        make_api(recorder).job("abcdefgh12")
    assert type(raised.value) is error
    assert raised.value.status == status
    assert len(recorder.requests) == 1


def test_a_200_that_is_not_json_is_an_apierror_not_a_valueerror() -> None:
    recorder = Recorder(httpx.Response(200, content=b"<html>maintenance</html>"))
    with pytest.raises(ApiError) as raised:
        make_api(recorder).job("abcdefgh12")
    assert not isinstance(raised.value, ValueError)
    assert raised.value.status == 200


def test_a_200_json_of_the_wrong_shape_is_an_apierror() -> None:
    with pytest.raises(ApiError):
        make_api(Recorder(httpx.Response(200, json={"unexpected": True}))).job("abcdefgh12")


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError])
def test_transport_errors_on_get_are_retried(failure: type[Exception]) -> None:
    recorder = Recorder(failure, job_json())
    assert make_api(recorder).job("abcdefgh12")["id"] == "abcdefgh12"
    assert len(recorder.requests) == 2


def test_transport_errors_on_every_try_end_in_apierror_without_status() -> None:
    recorder = Recorder(httpx.ConnectError)
    with pytest.raises(ApiError) as raised:
        make_api(recorder, attempts=4).job("abcdefgh12")
    assert raised.value.status is None
    assert len(recorder.requests) == 4


# -- submit ----------------------------------------------------------------------------------------------------

@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF....WAVEfmt audio bytes")
    return path


CONFIG = {"type": "transcription", "transcription_config": {"language": "en"}, "tracking": {"reference": REFERENCE}}


class Service:
    """A scripted job endpoint and listing, counting POSTs and listing reads separately."""

    def __init__(self, posts: list[httpx.Response | type[Exception]],
                 listings: list[httpx.Response | type[Exception]]) -> None:
        self.post_answers, self.listing_answers = posts, listings
        self.posts: list[httpx.Request] = []
        self.listings: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts.append(request)
            answers = self.post_answers
        else:
            self.listings.append(request)
            answers = self.listing_answers
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, type):
            raise answer("scripted failure", request=request)
        return answer


def created(job_id: str = "newjob0001") -> httpx.Response:
    return httpx.Response(201, json={"id": job_id})


def page(*items: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"jobs": list(items)})


def test_submit_returns_the_new_id_and_sends_config_and_audio(audio: Path) -> None:
    service = Service([created()], [page()])
    assert make_api(service).submit(audio, CONFIG) == "newjob0001"
    (post,) = service.posts
    assert post.url.path == "/v2/jobs"
    body = post.read()
    assert REFERENCE.encode() in body and b'name="config"' in body
    assert b'name="data_file"; filename="a.wav"' in body and audio.read_bytes() in body
    assert service.listings == []


def test_submit_after_an_answered_5xx_finds_our_job_in_the_listing(audio: Path) -> None:
    service = Service([httpx.Response(500), created("never")],
                      [page(listed("otherjob01", reference="someone-else"), listed("ourjob0001", reference=REFERENCE))])
    assert make_api(service).submit(audio, CONFIG) == "ourjob0001"
    assert len(service.posts) == 1


def test_submit_after_an_answered_5xx_with_no_such_job_tries_again(audio: Path) -> None:
    service = Service([httpx.Response(503), created("secondtry1")], [page(listed("otherjob01", reference="x"))])
    assert make_api(service).submit(audio, CONFIG) == "secondtry1"
    assert len(service.posts) == 2
    assert len(service.listings) == 1


@pytest.mark.parametrize("attempts", [1, 3])
def test_submit_never_posts_more_than_attempts_when_the_listing_is_empty(audio: Path, attempts: int) -> None:
    service = Service([httpx.Response(500)], [page()])
    with pytest.raises(ApiError) as raised:
        make_api(service, attempts=attempts).submit(audio, CONFIG)
    assert len(service.posts) == attempts
    assert raised.value.status == 503


@pytest.mark.parametrize("listing", [httpx.Response(503), httpx.Response(429), httpx.ReadTimeout,
                                     httpx.Response(200, content=b"not json")])
def test_one_budget_covers_the_posts_and_the_listing_reads(audio: Path,
                                                           listing: httpx.Response | type[Exception]) -> None:
    attempts = 3
    service = Service([httpx.Response(500)], [listing])
    with pytest.raises(AmbiguousSubmission):
        make_api(service, attempts=attempts).submit(audio, CONFIG)
    assert 1 <= len(service.posts) <= attempts
    assert len(service.posts) + len(service.listings) <= attempts + 1


def test_a_listing_that_fails_now_and_then_still_bounds_the_posts(audio: Path) -> None:
    service = Service([httpx.Response(500)], [httpx.Response(503), page(), httpx.Response(429), page()])
    with pytest.raises(ApiError):
        make_api(service, attempts=4).submit(audio, CONFIG)
    # POST fails, listing 503 (1), empty listing: POST again (2); POST fails, listing 429 (3), empty listing (4): done
    assert len(service.posts) == 2
    assert len(service.listings) == 4


def test_the_reference_lookup_looks_back_about_two_pages_only(audio: Path) -> None:
    jobs = spaced_jobs(10 * PAGE_SIZE, timedelta(seconds=1))  # none of them ours
    listing = Listing(jobs)
    posts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            return httpx.Response(500) if len(posts) == 1 else created("secondtry1")
        return listing(request)

    assert make_api(handler).submit(audio, CONFIG) == "secondtry1"
    assert 2 <= len(listing.cursors) <= 3  # 200 distinct jobs; the pages overlap by one job
    assert len(posts) == 2


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError,
                                     httpx.ReadError])
def test_no_answer_to_the_post_is_ambiguous_and_never_resent(audio: Path, failure: type[Exception]) -> None:
    service = Service([failure, created()], [page(listed("ourjob0001", reference=REFERENCE))])
    with pytest.raises(AmbiguousSubmission):
        make_api(service).submit(audio, CONFIG)
    assert len(service.posts) == 1
    assert service.listings == []


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_a_post_that_certainly_was_not_sent_is_retried(audio: Path, failure: type[Exception]) -> None:
    service = Service([failure, created("secondtry1")], [page()])
    assert make_api(service).submit(audio, CONFIG) == "secondtry1"
    assert len(service.posts) == 2
    assert service.listings == []  # nothing was sent, so there is nothing to look for


def test_a_429_on_the_post_is_retried_without_a_listing(audio: Path, clock: FakeClock) -> None:
    service = Service([httpx.Response(429, headers={"Retry-After": "3"}), created("secondtry1")], [page()])
    assert make_api(service).submit(audio, CONFIG) == "secondtry1"
    assert len(service.posts) == 2
    assert service.listings == []
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_a_5xx_without_a_reference_is_retried_without_a_listing(audio: Path) -> None:
    service = Service([httpx.Response(500), created("secondtry1")], [page()])
    assert make_api(service).submit(audio, {"type": "transcription"}) == "secondtry1"
    assert len(service.posts) == 2
    assert service.listings == []


@pytest.mark.parametrize("status, error", [(400, ApiError), (401, Unauthorized), (403, Unauthorized)])
def test_a_refused_post_is_final(audio: Path, status: int, error: type[ApiError]) -> None:
    service = Service([httpx.Response(status, json={"error": "bad"})], [page()])
    with pytest.raises(error):
        make_api(service).submit(audio, CONFIG)
    assert len(service.posts) == 1


def test_the_heartbeat_runs_before_every_try_and_can_stop_the_submission(audio: Path) -> None:
    beats: list[int] = []
    service = Service([httpx.ConnectError, httpx.ConnectError, created()], [page()])
    assert make_api(service).submit(audio, CONFIG, heartbeat=lambda: beats.append(len(service.posts))) == "newjob0001"
    assert beats[:3] == [0, 1, 2]

    class RowClosed(Exception):
        pass

    def closed() -> None:
        raise RowClosed

    stopped = Service([created()], [page()])
    with pytest.raises(RowClosed):
        make_api(stopped).submit(audio, CONFIG, heartbeat=closed)
    assert stopped.posts == []


@pytest.mark.parametrize("body", [b"<html>ok</html>", b"{}", b"[]", b'{"id": ""}', b'{"id": 7}'])
def test_a_2xx_post_with_an_unreadable_answer_is_ambiguous(audio: Path, body: bytes) -> None:
    service = Service([httpx.Response(201, content=body)], [page()])
    with pytest.raises(AmbiguousSubmission) as raised:
        make_api(service).submit(audio, CONFIG)
    assert raised.value.status == 201
    assert len(service.posts) == 1


# -- paging ------------------------------------------------------------------------------------------------------

BASE = datetime(2025, 6, 30, 12, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Listing:
    """GET /v2/jobs over a fixed set of jobs, newest first, honouring `created_before` (inclusive or not)."""

    def __init__(self, jobs: list[dict[str, Any]], inclusive: bool = False) -> None:
        self.jobs, self.inclusive = jobs, inclusive
        self.cursors: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["limit"] == str(PAGE_SIZE)
        assert request.url.params["include_deleted"] == "true"
        cursor = request.url.params.get("created_before")
        self.cursors.append(cursor)
        jobs = self.jobs
        if cursor:
            limit = api_module._parse_time(cursor)
            jobs = [job for job in jobs if (api_module._parse_time(job["created_at"]) <= limit if self.inclusive
                                            else api_module._parse_time(job["created_at"]) < limit)]
        return page(*jobs[:PAGE_SIZE])


def spaced_jobs(count: int, step: timedelta, group: int = 1) -> list[dict[str, Any]]:
    """`count` jobs, newest first; every `group` consecutive jobs share one created_at."""
    return [listed(f"job{i:07d}", iso(BASE - step * (i // group))) for i in range(count)]


@pytest.mark.parametrize("inclusive", [False, True])
def test_recent_jobs_pages_with_a_one_millisecond_overlap_and_yields_each_job_once(inclusive: bool) -> None:
    jobs = spaced_jobs(250, timedelta(milliseconds=1), group=3)  # ties straddle both page boundaries
    listing = Listing(jobs, inclusive)
    yielded = [item["id"] for item in make_api(listing).recent_jobs(since=0.0)]
    assert yielded == [job["id"] for job in jobs]
    assert listing.cursors[0] is None
    assert len(listing.cursors) >= 3
    returned_last = jobs[PAGE_SIZE - 1]["created_at"]
    assert listing.cursors[1] == iso(api_module._parse_time(returned_last) + timedelta(milliseconds=1))


def test_recent_jobs_stops_at_a_short_page() -> None:
    listing = Listing(spaced_jobs(PAGE_SIZE + 30, timedelta(seconds=1)))
    assert len(list(make_api(listing).recent_jobs(since=0.0))) == PAGE_SIZE + 30
    assert len(listing.cursors) == 2


def test_recent_jobs_stops_once_a_page_reaches_back_past_since() -> None:
    jobs = spaced_jobs(5 * PAGE_SIZE, timedelta(seconds=1))
    since = api_module.created_at(jobs[150])
    listing = Listing(jobs)
    yielded = list(make_api(listing).recent_jobs(since=since))
    assert len(listing.cursors) == 2
    assert {job["id"] for job in jobs[:151]} <= {item["id"] for item in yielded}


def test_recent_jobs_stops_when_the_server_ignores_the_cursor() -> None:
    jobs = spaced_jobs(PAGE_SIZE, timedelta(seconds=1))
    recorder = Recorder(page(*jobs))
    assert len(list(make_api(recorder).recent_jobs(since=0.0))) == PAGE_SIZE
    assert len(recorder.requests) == 2


def test_a_failing_page_is_retried_within_the_read_budget() -> None:
    jobs = spaced_jobs(PAGE_SIZE + 5, timedelta(seconds=1))
    listing = Listing(jobs)
    answers = iter([httpx.Response(503), None, httpx.Response(429), None])

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or listing(request)

    assert len(list(make_api(flaky).recent_jobs(since=0.0))) == PAGE_SIZE + 5


@pytest.mark.parametrize("value, later", [
    ("2025-06-30T11:43:54.135Z", "2025-06-30T11:43:54.136Z"),
    ("2025-06-30T11:43:54.999Z", "2025-06-30T11:43:55.000Z"),
    ("2025-12-31T23:59:59.999Z", "2026-01-01T00:00:00.000Z"),
    ("2025-06-30T11:43:54Z", "2025-06-30T11:43:54.001Z"),
    ("2025-06-30T11:43:54.135+00:00", "2025-06-30T11:43:54.136Z"),
    ("2025-06-30T13:43:54.135+02:00", "2025-06-30T11:43:54.136Z"),
    ("2025-06-30T11:43:54.135999Z", "2025-06-30T11:43:54.136Z"),
])
def test_the_cursor_is_one_millisecond_after_in_utc(value: str, later: str) -> None:
    assert _one_millisecond_later(value) == later


# -- download -----------------------------------------------------------------------------------------------------

class MemoryFile(io.BytesIO):
    """Any binary file that can start again will do: the API client knows nothing of the spool."""

    def restart(self) -> None:
        self.seek(0)
        self.truncate()

    @property
    def size(self) -> int:
        return len(self.getvalue())

    def reader(self) -> io.BytesIO:
        return io.BytesIO(self.getvalue())


@pytest.fixture
def incoming() -> MemoryFile:
    return MemoryFile()


class BrokenStream(httpx.SyncByteStream):
    """A body that sends some bytes and then loses the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"format": "2.9", "job": {"id": "GARBAGE-FROM-TRY-ONE"'
        raise httpx.ReadError("connection reset")


def test_download_streams_the_transcript_into_the_file(incoming: MemoryFile) -> None:
    body = DOCS_TRANSCRIPT.read_bytes()
    recorder = Recorder(httpx.Response(200, content=body))
    make_api(recorder).download_transcript("650krlru2e", incoming)
    assert incoming.reader().read() == body
    assert incoming.size == len(body)
    (request,) = recorder.requests
    assert request.url.path == "/v2/jobs/650krlru2e/transcript"
    assert request.url.params["format"] == "json-v2"
    assert request.url.params["wait"] == "0"


@pytest.mark.parametrize("first", [httpx.Response(200, stream=BrokenStream()),
                                   httpx.Response(503, content=b"FIRST-TRY-ERROR-PAGE"),
                                   httpx.Response(429, content=b"FIRST-TRY-ERROR-PAGE")])
def test_a_retried_download_starts_the_file_again(incoming: MemoryFile, first: httpx.Response) -> None:
    body = DOCS_TRANSCRIPT.read_bytes()
    incoming.write(b"left over from before")
    recorder = Recorder(first, httpx.Response(200, content=body))
    make_api(recorder).download_transcript("650krlru2e", incoming)
    assert len(recorder.requests) == 2
    assert incoming.reader().read() == body
    assert incoming.size == len(body)


@pytest.mark.parametrize("status, error", [(404, JobNotFound), (410, JobGone), (401, Unauthorized)])
def test_a_refused_download_raises_and_leaves_the_file_empty(incoming: MemoryFile, status: int,
                                                             error: type[ApiError]) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "no"}))
    with pytest.raises(error):
        make_api(recorder).download_transcript("650krlru2e", incoming)
    assert incoming.size == 0
    assert incoming.reader().read() == b""


def test_a_download_past_its_deadline_is_abandoned(incoming: MemoryFile, monkeypatch: pytest.MonkeyPatch) -> None:
    class Trickle(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(1000):
                yield b"x" * 10

    class JumpingClock:
        """Every look at the clock finds a minute has passed."""

        def __init__(self) -> None:
            self.now = 0.0

        def monotonic(self) -> float:
            self.now += 60.0
            return self.now

        def sleep(self, seconds: float) -> None:
            pass

    monkeypatch.setattr(api_module, "time", JumpingClock())
    recorder = Recorder(lambda request: httpx.Response(200, stream=Trickle()))
    with pytest.raises(ApiError, match="ReadTimeout"):
        make_api(recorder, attempts=2, timeout=1.0).download_transcript("650krlru2e", incoming)
    assert len(recorder.requests) == 2


# -- rejection_reason ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("errors, reason", [
    ([{"message": "Job rejected due to invalid audio"},
      {"message": "Error in sending notification: connection refused, retrying"},
      {"message": "unable to send notification: timeout"},
      {"message": "Sending notification failed"}], "Job rejected due to invalid audio"),
    ([{"message": "Error in sending notification: 500, retrying"},
      {"message": "Fetch of the media URL failed"}], "Fetch of the media URL failed"),
    ([{"message": "Error in sending notification: 500, retrying"},
      {"message": "unable to send notification: timeout"},
      {"message": "Sending notification failed"}], None),
    ([], None),
    (None, None),
    ([{"timestamp": "2025-06-30T11:43:54.135Z"}, "not an object", {"message": ""},
      {"message": "real reason"}], "real reason"),
])
def test_rejection_reason_skips_notification_delivery_errors(errors: list[Any] | None, reason: str | None) -> None:
    job: dict[str, Any] = {"id": "abcdefgh12", "status": "rejected"}
    if errors is not None:
        job["errors"] = errors
    assert rejection_reason(job) == reason


def test_rejection_reason_of_the_docs_job_without_errors_is_none() -> None:
    job = json.loads(DOCS_TRANSCRIPT.read_text())["job"]
    assert rejection_reason(job) is None


def test_a_spent_budget_after_an_answered_5xx_is_ambiguous_not_a_failure(audio: Path) -> None:
    """Every one of those POSTs may have made the job: the row must stay for cronjob.py to resolve."""
    service = Service([httpx.Response(503)], [page()])
    with pytest.raises(AmbiguousSubmission):
        make_api(service, attempts=3).submit(audio, CONFIG)


def test_a_spent_budget_of_429s_alone_is_a_plain_failure(audio: Path) -> None:
    service = Service([httpx.Response(429, headers={"Retry-After": "0"})], [page()])
    with pytest.raises(ApiError) as raised:
        make_api(service, attempts=3).submit(audio, CONFIG)
    assert not isinstance(raised.value, AmbiguousSubmission)
    assert service.listings == []


@pytest.mark.parametrize("item", [{"id": "abcdefgh12"}, {"created_at": "2025-06-30T11:43:54.135Z"},
                                  {"id": 7, "created_at": "2025-06-30T11:43:54.135Z"}, "abcdefgh12",
                                  {"id": "abcdefgh12", "created_at": "yesterday"}])
def test_a_listing_with_malformed_jobs_is_an_apierror(item: Any) -> None:
    api = make_api(lambda request: httpx.Response(200, json={"jobs": [item]}), attempts=1)
    with pytest.raises(ApiError):
        api.jobs_page()


@pytest.mark.parametrize("job", [None, [], "rejected", {"errors": "bad"}, {"errors": [None, 3]}])
def test_rejection_reason_of_an_odd_answer_is_none(job: Any) -> None:
    assert rejection_reason(job) is None


def test_an_undecodable_answer_to_a_post_is_ambiguous(audio: Path) -> None:
    service = Service([httpx.DecodingError], [page()])
    with pytest.raises(AmbiguousSubmission):
        make_api(service).submit(audio, CONFIG)
    assert len(service.posts) == 1


@pytest.mark.parametrize("tracking", [{"reference": {"a": 1}}, {"reference": ["x"]}, {"reference": 7}, "text", None])
def test_a_reference_that_is_not_a_string_is_no_reference(tracking: Any) -> None:
    """Another tool on the account may put anything in `tracking`; none of it is ours, and none of it breaks us."""
    assert api_module.reference_of({"id": "x", "config": {"tracking": tracking}}) is None
    assert api_module.reference_of({"id": "x", "config": "not an object"}) is None


def test_the_api_client_imports_neither_the_parser_nor_the_spool() -> None:
    import ast

    tree = ast.parse(Path(api_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"notification_flow.transcripts", "notification_flow.jsonv2", "notification_flow.payloads"}


class SharedClock:
    """A fake clock several threads share: only sleeping moves it, and a sleeper may wake late (a busy
    scheduler), by a seeded amount, so the same run gives the same clock readings."""

    def __init__(self, seed: int) -> None:
        self.now, self.lock = 0.0, threading.Lock()
        self.late = random.Random(seed)

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds + self.late.choice([0.0, 0.0, 0.0, 0.05, 0.3])


def worst_one_second_window(starts: list[float]) -> int:
    """The most starts any window [t, t + 1s) holds; enough to try windows opening at a start."""
    starts = sorted(starts)
    return max(bisect.bisect_left(starts, start + 1.0) - index for index, start in enumerate(starts))


@pytest.mark.parametrize("per_second", [9.5, 48])
def test_the_rate_limiter_never_starts_more_than_its_limit_in_any_one_second_window(per_second: float) -> None:
    """Threads calling at once, some waking late from their wait: wherever the one-second window is put, it
    never holds more starts than the limit (a paced schedule can: a late thread bunches with punctual ones)."""
    clock, calls_each = SharedClock(seed=int(per_second)), int(per_second) * 3
    limiter = api_module.RateLimiter(per_second, clock=clock.monotonic, sleep=clock.sleep)
    starts: list[float] = []

    def calls() -> None:
        for _ in range(calls_each):
            limiter.wait()
            starts.append(clock.monotonic())
            clock.sleep(0.0)  # the request itself, which may also be slow to come back

    threads = [threading.Thread(target=calls) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(starts) == calls_each * 6
    assert worst_one_second_window(starts) <= math.ceil(per_second)


class Ticking:
    """Stands in for the `time` module inside notification_flow.api: each reading is `step` seconds later."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def test_a_long_upload_keeps_the_heartbeat_going_and_a_closed_row_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row is seen alive while the audio goes out, however long that takes; a heartbeat saying the row
    was closed stops the upload in the middle, and nothing is created."""
    monkeypatch.setattr(api_module, "time", Ticking(api_module.HEARTBEAT_SECONDS / 2))
    long_audio = tmp_path / "long.wav"
    long_audio.write_bytes(bytes(4 * 1024 * 1024))
    received: list[int] = []

    def upload(request: httpx.Request) -> httpx.Response:
        received.append(len(request.read()))
        return created()

    beats: list[int] = []
    assert make_api(upload).submit(long_audio, CONFIG, heartbeat=lambda: beats.append(1)) == "newjob0001"
    assert received[0] > 4 * 1024 * 1024 and len(beats) > 10  # one before the try, then during the upload

    class RowClosed(Exception):
        pass

    def closed_after_two() -> None:
        beats.append(1)
        if len(beats) > 2:
            raise RowClosed

    beats.clear()
    received.clear()
    with pytest.raises(RowClosed):
        make_api(upload).submit(long_audio, CONFIG, heartbeat=closed_after_two)
    assert received == []
