"""What a body is: which parts count, whose fields win, and what makes a document a transcript (payloads.py)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from notification_flow.payloads import UnreadableBody, check_transcript, read_body, request_class
from notification_flow.spool import IncomingFile, NotATranscript
from notification_flow.transcripts import TranscriptFiles

JOB_ID = "650krlru2e"
REFERENCE = "0123456789abcdef0123456789abcdef"
JSON = "application/json"


def transcript(job: dict[str, Any], **top: Any) -> dict[str, Any]:
    """The smallest json-v2 transcript: exactly the three keys that make a document one."""
    return {"format": "2.9", "job": job, "results": [], **top}


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture
def app(transcripts: TranscriptFiles) -> flask.Flask:
    app = flask.Flask(__name__)
    app.request_class = request_class(transcripts)
    return app


@pytest.fixture
def incoming(transcripts: TranscriptFiles) -> Iterator[Any]:
    """Write bytes to a spool file, as a download does, and hand the file to the check."""
    with transcripts.incoming_file() as spool:
        def writing(data: bytes) -> IncomingFile:
            spool.restart()
            spool.write(data)
            return spool
        yield writing


def multipart(*parts: tuple[str, bytes, str]) -> dict[str, Any]:
    """(name, content, content type) parts as Speechmatics posts them."""
    return {"method": "POST", "content_type": "multipart/form-data",
            "data": {name: (io.BytesIO(content), f"{name}.json", kind) for name, content, kind in parts}}


def body_fields(app: flask.Flask, transcripts: TranscriptFiles, **request: Any) -> tuple[bool, dict[str, str]]:
    """Whether the body brought a transcript, and the job's fields it gave."""
    with app.test_request_context(f"/webhook?id={JOB_ID}&status=success", **request), \
            read_body(flask.request, JOB_ID, transcripts, 1 << 20) as body:
        return body.transcript is not None, dict(body.info)


def test_multipart_parts_are_spooled_in_the_transcripts_directory(app: flask.Flask,
                                                                  transcripts: TranscriptFiles) -> None:
    with app.test_request_context("/webhook", **multipart(("jobinfo", encoded({"id": JOB_ID}), JSON))):
        part = flask.request.files["jobinfo"]
        held = os.readlink(f"/proc/self/fd/{part.stream.fileno()}")
    assert Path(held).parent == transcripts.incoming


def test_the_transcripts_own_fields_win_over_the_jobinfo_part_in_either_order(app: flask.Flask,
                                                                              transcripts: TranscriptFiles) -> None:
    transcript_part = ("transcript", encoded(transcript({"id": JOB_ID, "tracking": {"reference": REFERENCE}})), JSON)
    jobinfo_part = ("jobinfo", encoded({"id": JOB_ID, "tracking": {"reference": "b" * 32}, "data_name": "a.wav"}),
                    JSON)
    for parts in ((transcript_part, jobinfo_part), (jobinfo_part, transcript_part)):
        has_transcript, info = body_fields(app, transcripts, **multipart(*parts))
        assert has_transcript
        assert info["tracking.reference"] == REFERENCE  # the transcript's
        assert info["data_name"] == "a.wav"  # what the transcript lacks, from the jobinfo part


def test_named_parts_are_read_whatever_content_type_they_were_sent_with(app: flask.Flask,
                                                                        transcripts: TranscriptFiles) -> None:
    has_transcript, info = body_fields(app, transcripts, **multipart(
        ("transcript", encoded(transcript({"id": JOB_ID})), "application/octet-stream")))
    assert has_transcript and info["id"] == JOB_ID
    has_transcript, info = body_fields(app, transcripts, **multipart(
        ("jobinfo", encoded({"id": JOB_ID, "errors": [{"message": "bad audio"}]}), "application/octet-stream")))
    assert not has_transcript and info["errors.item.message"] == "bad audio"


def test_a_document_with_exactly_the_transcript_keys_is_a_transcript(app: flask.Flask, transcripts: TranscriptFiles,
                                                                     incoming: Any) -> None:
    has_transcript, _ = body_fields(app, transcripts, data=encoded(transcript({"id": JOB_ID})), content_type=JSON,
                                    method="POST")
    assert has_transcript
    check_transcript(incoming(encoded(transcript({"id": JOB_ID}))), JOB_ID)


def test_a_transcript_that_names_no_job_is_refused(app: flask.Flask, transcripts: TranscriptFiles) -> None:
    with pytest.raises(UnreadableBody, match=JOB_ID):
        body_fields(app, transcripts, data=encoded(transcript({"data_name": "a.wav"})), content_type=JSON,
                    method="POST")


def test_a_download_must_be_a_complete_transcript_of_that_very_job(incoming: Any) -> None:
    refused = {"another job's transcript": encoded(transcript({"id": "otherjob99"})),
               "this job's info, not a transcript": encoded({"id": JOB_ID, "status": "done"}),
               "a transcript without results": encoded({"format": "2.9", "job": {"id": JOB_ID}}),
               "cut short": encoded(transcript({"id": JOB_ID}))[:-1]}
    for why, data in refused.items():
        spool = incoming(data)
        with pytest.raises(NotATranscript, match=f"the transcript of {JOB_ID} is "):
            check_transcript(spool, JOB_ID)
        assert spool.checked_for is None, why
    spool = incoming(encoded(transcript({"id": JOB_ID}, metadata={})))
    check_transcript(spool, JOB_ID)
    assert spool.checked_for == JOB_ID
