"""Unit tests of notification_flow.payloads.read_body: every documented notification body shape."""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any

import flask
import pytest

from notification_flow.payloads import NotificationBody, UnreadableBody, read_body, request_class
from notification_flow.spool import BodyTooLarge
from notification_flow.transcripts import TranscriptFiles
from tests.unit.support import held_open

DOCS_TRANSCRIPT = Path(__file__).parents[1] / "emulator" / "fixtures" / "transcript-json-v2-docs-example.json"
SAMPLES = Path("/work/shared/reference/samples")
JOB_ID = "650krlru2e"
REFERENCE = "0123456789abcdef0123456789abcdef"
LIMIT = 64 * 1024 * 1024
JSON = "application/json"


def transcript_document(job_id: str = JOB_ID, reference: str | None = REFERENCE) -> dict[str, Any]:
    document = json.loads(DOCS_TRANSCRIPT.read_text())
    document["job"]["id"] = job_id
    if reference:
        document["job"]["tracking"] = {"reference": reference, "title": "a title", "details": {"n": 1}}
    return document


def transcript_bytes(job_id: str = JOB_ID, reference: str | None = REFERENCE) -> bytes:
    return json.dumps(transcript_document(job_id, reference), indent=2).encode()


def jobinfo_bytes(job_id: str = JOB_ID, reference: str | None = REFERENCE, **extra: Any) -> bytes:
    return json.dumps({**transcript_document(job_id, reference)["job"], **extra}).encode()


TXT = b"Hello, this is an example transcript.\n"
SRT = b"1\n00:00:00,000 --> 00:00:02,000\nHello, this is an example.\n"


@pytest.fixture
def transcripts(tmp_path: Path) -> TranscriptFiles:
    return TranscriptFiles(tmp_path / "transcripts").ensure_directories()


@pytest.fixture
def app(transcripts: TranscriptFiles) -> flask.Flask:
    app = flask.Flask(__name__)
    app.request_class = request_class(transcripts)
    return app


def leftovers(transcripts: TranscriptFiles) -> list[str]:
    """Temporary files in .incoming: named there, or held open by this process (werkzeug's multipart parts)."""
    return sorted({*map(str, transcripts.incoming.iterdir()), *held_open(transcripts.incoming)})


class Read:
    """What one read_body call saw: the body's fields, and the transcript's bytes while the file existed."""

    def __init__(self, body: NotificationBody) -> None:
        self.transcript = body.transcript.reader().read() if body.transcript is not None else None
        self.job_id, self.reference, self.error, self.info = body.job_id, body.reference, body.error, dict(body.info)


def read(app: flask.Flask, transcripts: TranscriptFiles, job_id: str = JOB_ID, limit: int = LIMIT,
         **request: Any) -> Read:
    request.setdefault("method", "POST")
    with app.test_request_context(f"/webhook?id={job_id}&status=success", **request), \
            read_body(flask.request, job_id, transcripts, limit) as body:
        return Read(body)


def multipart(*parts: tuple[str, bytes, str, str]) -> dict[str, Any]:
    """test_request_context arguments for multipart/form-data with (name, content, filename, content type) parts."""
    return {"data": {name: (io.BytesIO(content), filename, kind) for name, content, filename, kind in parts},
            "content_type": "multipart/form-data"}


TRANSCRIPT_PART = ("transcript", transcript_bytes(), "transcript.json", JSON)
JOBINFO_PART = ("jobinfo", jobinfo_bytes(), "jobinfo.json", JSON)
TXT_PART = ("transcript.txt", TXT, "transcript.txt", "text/plain")
SRT_PART = ("transcript.srt", SRT, "transcript.srt", "text/plain")
DATA_PART = ("data", b"RIFF\x00\x01audio", "a.wav", "application/octet-stream")

# name -> (request arguments, transcript expected, reference expected, job id expected)
SHAPES: dict[str, tuple[dict[str, Any], bool, str | None, str | None]] = {
    "transcript as JSON": ({"data": transcript_bytes(), "content_type": JSON}, True, REFERENCE, JOB_ID),
    "transcript with charset": ({"data": transcript_bytes(), "content_type": f"{JSON}; charset=utf-8"}, True,
                                REFERENCE, JOB_ID),
    "transcript as vnd JSON": ({"data": transcript_bytes(), "content_type": "application/vnd.speechmatics.v2+json"},
                               True, REFERENCE, JOB_ID),
    "PUT with transcript": ({"data": transcript_bytes(), "content_type": JSON, "method": "PUT"}, True, REFERENCE,
                           JOB_ID),
    "transcript without tracking": ({"data": transcript_bytes(reference=None), "content_type": JSON}, True, None,
                                    JOB_ID),
    "jobinfo as JSON": ({"data": jobinfo_bytes(), "content_type": JSON}, False, REFERENCE, JOB_ID),
    "transcript.txt as text": ({"data": TXT, "content_type": "text/plain; charset=utf-8"}, False, None, None),
    "transcript.srt as text": ({"data": SRT, "content_type": "text/plain; charset=utf-8"}, False, None, None),
    "empty body": ({"data": b""}, False, None, None),
    "empty JSON body": ({"data": b"", "content_type": JSON}, False, None, None),
    "multipart data_file": (multipart(("data_file", transcript_bytes(), "transcript.json", JSON)), True, REFERENCE,
                            JOB_ID),
    "multipart transcript and jobinfo": (multipart(TRANSCRIPT_PART, JOBINFO_PART), True, REFERENCE, JOB_ID),
    "multipart jobinfo then transcript": (multipart(JOBINFO_PART, TRANSCRIPT_PART), True, REFERENCE, JOB_ID),
    "multipart reference only in jobinfo": (multipart(("transcript", transcript_bytes(reference=None),
                                                       "transcript.json", JSON), JOBINFO_PART), True, REFERENCE,
                                            JOB_ID),
    "multipart transcript.json-v2": (multipart(("transcript.json-v2", transcript_bytes(), "transcript.json", JSON)),
                                     True, REFERENCE, JOB_ID),
    "multipart txt, srt and data": (multipart(TXT_PART, SRT_PART, DATA_PART), False, None, None),
    "multipart data and jobinfo": (multipart(DATA_PART, JOBINFO_PART), False, REFERENCE, JOB_ID),
    "multipart data alone": (multipart(DATA_PART), False, None, None),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_body_shape(app: flask.Flask, transcripts: TranscriptFiles, shape: str) -> None:
    request, has_transcript, reference, job_id = SHAPES[shape]
    seen = read(app, transcripts, **copy.deepcopy(request))
    if has_transcript:
        assert seen.transcript is not None
        assert json.loads(seen.transcript)["job"]["id"] == JOB_ID
    else:
        assert seen.transcript is None
    assert seen.reference == reference
    assert seen.job_id == job_id
    assert seen.error is None
    assert leftovers(transcripts) == []
    assert list(transcripts.unreadable.iterdir()) == []


def test_a_whole_json_transcript_is_kept_byte_for_byte(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    body = transcript_bytes()
    assert read(app, transcripts, data=body, content_type=JSON).transcript == body


def test_only_job_fields_are_kept(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    seen = read(app, transcripts, data=transcript_bytes(), content_type=JSON)
    assert seen.info == {"id": JOB_ID, "created_at": "2025-06-30T11:43:54.135Z", "data_name": "example.wav",
                         "tracking.reference": REFERENCE, "tracking.title": "a title"}


@pytest.mark.parametrize("sample", sorted(path.name for path in SAMPLES.glob("transcript-json-v2-*.json")))
def test_real_transcripts_are_recognised(app: flask.Flask, transcripts: TranscriptFiles,
                                         sample: str) -> None:
    document = json.loads((SAMPLES / sample).read_text())
    body = (SAMPLES / sample).read_bytes()
    seen = read(app, transcripts, job_id=document["job"]["id"], data=body, content_type=JSON)
    assert seen.transcript == body
    assert seen.job_id == document["job"]["id"]
    assert seen.reference is None


def test_a_failure_jobinfo_carries_its_error(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    body = jobinfo_bytes(status="rejected", errors=[{"timestamp": "2025-06-30T11:44:00.000Z",
                                                     "message": "Job rejected due to invalid audio"}])
    seen = read(app, transcripts, data=body, content_type=JSON)
    assert seen.error == "Job rejected due to invalid audio"
    assert seen.transcript is None
    assert seen.reference == REFERENCE


def test_the_error_is_the_real_reason_not_a_later_delivery_error(app: flask.Flask,
                                                                 transcripts: TranscriptFiles) -> None:
    body = jobinfo_bytes(status="rejected", errors=[
        {"message": "Job rejected due to invalid audio"},
        {"message": "Error in sending notification: connection refused, retrying"}])
    assert read(app, transcripts, data=body, content_type=JSON).error == "Job rejected due to invalid audio"


@pytest.mark.parametrize("cut", [1, 100, 2000, -1])
def test_a_truncated_json_body_is_refused_and_kept_once(app: flask.Flask, transcripts: TranscriptFiles,
                                                        cut: int) -> None:
    body = transcript_bytes()[:cut]
    for _ in range(2):  # Speechmatics retries: still one copy
        with pytest.raises(UnreadableBody):
            read(app, transcripts, data=body, content_type=JSON)
    assert [path.name for path in transcripts.unreadable.iterdir()] == [f"{JOB_ID}.body"]
    assert (transcripts.unreadable / f"{JOB_ID}.body").read_bytes() == body
    assert leftovers(transcripts) == []


def test_a_body_nested_too_deeply_is_refused_and_kept(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    """Refused as what it is, not an error that would answer 500 and keep nothing."""
    body = b'{"id": "' + JOB_ID.encode() + b'", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(UnreadableBody, match="nested too deeply"):
        read(app, transcripts, data=body, content_type=JSON)
    assert (transcripts.unreadable / f"{JOB_ID}.body").read_bytes() == body
    assert leftovers(transcripts) == []


def test_a_truncated_transcript_part_is_refused(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    with pytest.raises(UnreadableBody):
        read(app, transcripts, **multipart(("transcript", transcript_bytes()[:-10], "transcript.json", JSON)))
    assert leftovers(transcripts) == []


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b'"a string"', b"42", b"null", b"true", b"\xff\xfe{}"])
def test_json_that_is_not_an_object_is_refused(app: flask.Flask, transcripts: TranscriptFiles,
                                               body: bytes) -> None:
    with pytest.raises(UnreadableBody):
        read(app, transcripts, data=body, content_type=JSON)
    assert leftovers(transcripts) == []


def test_an_object_that_is_neither_transcript_nor_jobinfo_holds_nothing(app: flask.Flask,
                                                                        transcripts: TranscriptFiles) -> None:
    seen = read(app, transcripts, data=b'{"hello": "world", "format": "2.9"}', content_type=JSON)
    assert (seen.transcript, seen.job_id, seen.reference) == (None, None, None)


@pytest.mark.parametrize("request_args, kept", [
    ({"data": transcript_bytes(job_id="otherjob99"), "content_type": JSON}, True),
    ({"data": jobinfo_bytes(job_id="otherjob99"), "content_type": JSON}, False),
    (multipart(("transcript", transcript_bytes(job_id="otherjob99"), "transcript.json", JSON)), True),
    (multipart(TRANSCRIPT_PART, ("jobinfo", jobinfo_bytes(job_id="otherjob99"), "jobinfo.json", JSON)), False),
    (multipart(("transcript", transcript_bytes(job_id="otherjob99"), "transcript.json", JSON), JOBINFO_PART), True),
    (multipart(JOBINFO_PART, ("transcript", transcript_bytes(job_id="otherjob99"), "transcript.json", JSON)), True),
])
def test_a_body_for_another_job_is_refused(app: flask.Flask, transcripts: TranscriptFiles,
                                           request_args: dict[str, Any], kept: bool) -> None:
    with pytest.raises(UnreadableBody, match="otherjob99"):
        read(app, transcripts, **copy.deepcopy(request_args))
    assert (transcripts.unreadable / f"{JOB_ID}.body").exists() is kept
    assert leftovers(transcripts) == []


@pytest.mark.parametrize("request_args", [
    {"data": transcript_bytes(), "content_type": JSON},
    multipart(TRANSCRIPT_PART),
])
def test_a_body_over_the_limit_is_refused(app: flask.Flask, transcripts: TranscriptFiles,
                                          request_args: dict[str, Any]) -> None:
    with pytest.raises(BodyTooLarge):
        read(app, transcripts, limit=1000, **copy.deepcopy(request_args))
    assert leftovers(transcripts) == []


def big_transcript() -> bytes:
    document = transcript_document()
    copies = 2 * 1024 * 1024 // len(json.dumps(document["results"])) + 1
    document["results"] = document["results"] * copies
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def big() -> bytes:
    return big_transcript()


@pytest.mark.parametrize("shape", ["json", "multipart"])
def test_a_large_transcript_gives_the_same_result(app: flask.Flask, transcripts: TranscriptFiles,
                                                  big: bytes, shape: str) -> None:
    assert len(big) > 2 * 1024 * 1024
    small = read(app, transcripts, data=transcript_bytes(), content_type=JSON)
    request_args = ({"data": big, "content_type": JSON} if shape == "json"
                    else multipart(("transcript", big, "transcript.json", JSON)))
    large = read(app, transcripts, **request_args)
    assert large.transcript == big
    assert large.info == small.info
    assert leftovers(transcripts) == []


def test_a_truncated_large_transcript_is_refused(app: flask.Flask, transcripts: TranscriptFiles,
                                                           big: bytes) -> None:
    with pytest.raises(UnreadableBody):
        read(app, transcripts, data=big[:-3], content_type=JSON)
    assert (transcripts.unreadable / f"{JOB_ID}.body").read_bytes() == big[:-3]


def test_temporary_files_exist_during_the_block_and_are_gone_after(app: flask.Flask,
                                                                   transcripts: TranscriptFiles) -> None:
    with app.test_request_context("/webhook", method="POST", **multipart(TRANSCRIPT_PART, JOBINFO_PART)), \
            read_body(flask.request, JOB_ID, transcripts, LIMIT) as body:
        assert body.transcript is not None
        held = os.readlink(f"/proc/self/fd/{body.transcript.file.fileno()}")
        assert Path(held).parent == transcripts.incoming
        assert body.transcript.name == held and Path(held).exists()
        during = held_open(transcripts.incoming)
    assert len(during) >= 1
    assert body.transcript.file.closed
    assert held_open(transcripts.incoming) == []
    assert leftovers(transcripts) == []


def test_temporary_files_are_removed_when_the_block_raises(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    with pytest.raises(RuntimeError), \
            app.test_request_context("/webhook", method="POST", data=transcript_bytes(), content_type=JSON), \
            read_body(flask.request, JOB_ID, transcripts, LIMIT):
        assert leftovers(transcripts) != []
        raise RuntimeError("the handler failed")
    assert leftovers(transcripts) == []

