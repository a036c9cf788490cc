"""Reading a notification body, whatever shape `contents` gave it, without holding it in memory.

Speechmatics sends nothing (``contents: []``), one item as the whole body (JSON for ``transcript``,
``transcript.json-v2`` and ``jobinfo``; text/plain for ``transcript.txt`` and ``transcript.srt``), or
multipart/form-data with one named file part per item (``data_file`` when ``contents`` is omitted). We keep
the json-v2 transcript if there is one, and the job info (id, tracking reference, errors) from wherever it is.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from notification_flow import jsonv2
from notification_flow.transcripts import IncomingFile, NotATranscript, TranscriptStore

if TYPE_CHECKING:  # Flask is the server's: cronjob.py checks downloads here without importing it (0.15 s)
    from flask import Request

TRANSCRIPT_PARTS = ("transcript", "transcript.json-v2", "data_file")
JSON_TYPES = ("application/json", "application/vnd.speechmatics.v2+json")


class UnreadableBody(Exception):
    """The body claims to be JSON (or a transcript part) but cannot be parsed."""

    def __init__(self, message: str, incoming: IncomingFile | None = None) -> None:
        super().__init__(message)
        self.incoming = incoming


@dataclass
class NotificationBody:
    transcript: IncomingFile | None = None  # a complete, parsed json-v2 transcript, not yet stored
    info: dict[str, Any] = field(default_factory=dict)  # scalar job fields: id, tracking.reference, errors

    @property
    def job_id(self) -> str | None:
        return self.info.get("id")

    @property
    def reference(self) -> str | None:
        return self.info.get("tracking.reference")

    @property
    def error(self) -> str | None:
        return self.info.get(jsonv2.ERROR_FIELD)


def request_class(transcripts: TranscriptStore) -> type[Request]:
    """Flask's Request, but multipart parts are spooled to TRANSCRIPTS_DIR/.incoming: the default spools
    to the system temp directory, often a RAM disk, where a 200 MB part would sit in memory after all."""
    from flask import Request

    class NotificationRequest(Request):
        def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                             filename: str | None = None, content_length: int | None = None) -> BinaryIO:
            return tempfile.TemporaryFile(dir=transcripts.incoming)

    return NotificationRequest


@contextlib.contextmanager
def read_body(request: Request, job_id: str, transcripts: TranscriptStore,
              limit: int) -> Iterator[NotificationBody]:
    """Yield what the body holds; every temporary file is removed when the block ends. A body that cannot
    be understood is kept in TRANSCRIPTS_DIR/.unreadable for an operator, then UnreadableBody is raised."""
    with contextlib.ExitStack() as cleanup:
        def new_file() -> IncomingFile:
            return cleanup.enter_context(transcripts.incoming_file(limit))

        try:
            if request.mimetype == "multipart/form-data":
                body = _read_multipart(request, new_file)
            else:
                body = _read_single(new_file().copy_from(request.stream), request.mimetype)
            if body.job_id not in (None, job_id) or (body.transcript is not None and body.job_id != job_id):
                raise UnreadableBody(f"body is not for job {job_id!r} (it names {body.job_id!r})", body.transcript)
            if body.transcript is not None:
                body.transcript.checked_for = job_id
        except UnreadableBody as error:
            if error.incoming is not None:
                transcripts.keep_unreadable(job_id, error.incoming)
            raise
        yield body


def _read_single(incoming: IncomingFile, mimetype: str) -> NotificationBody:
    if incoming.size == 0 or mimetype not in JSON_TYPES:
        return NotificationBody()  # empty, or transcript.txt / .srt: the json-v2 must come from the API
    return _read_json(incoming)


def _read_multipart(request: Request, new_file: Any) -> NotificationBody:
    body = NotificationBody()
    for name, part in request.files.items():
        if name in TRANSCRIPT_PARTS or (name not in ("jobinfo",) and part.mimetype in JSON_TYPES):
            incoming = new_file()
            shutil.copyfileobj(part.stream, incoming)
            found = _read_json(incoming)
            body.transcript = body.transcript or found.transcript
            body.info = {**found.info, **body.info}
        elif name == "jobinfo":
            incoming = new_file()
            shutil.copyfileobj(part.stream, incoming)
            body.info = {**body.info, **_read_json(incoming).info}
    return body


def _read_json(incoming: IncomingFile) -> NotificationBody:
    """Parse the whole document (so a truncated one is caught), keeping only the job's string fields."""
    try:
        top_keys, info = jsonv2.read(incoming.reader(), incoming.size)
    except jsonv2.NotJson as error:
        raise UnreadableBody(f"body is {error}", incoming) from error
    return NotificationBody(transcript=incoming if top_keys >= jsonv2.TRANSCRIPT_KEYS else None, info=info)


def check_transcript(incoming: IncomingFile, job_id: str) -> None:
    """Raise NotATranscript unless the file is a complete json-v2 transcript of `job_id`; mark it checked,
    which publishing requires. Downloads go through here; notification bodies through `read_body`."""
    try:
        top_keys, info = jsonv2.read(incoming.reader(), incoming.size)
    except jsonv2.NotJson as error:
        raise NotATranscript(f"the transcript of {job_id} is {error}") from error
    if not top_keys >= jsonv2.TRANSCRIPT_KEYS or info.get("id") != job_id:
        raise NotATranscript(f"the transcript of {job_id} is not a json-v2 transcript of that job")
    incoming.checked_for = job_id
