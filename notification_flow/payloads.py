"""Reading a notification body, whatever shape `contents` gave it, without holding it in memory.

Speechmatics sends nothing (``contents: []``), one item as the whole body (JSON for ``transcript``,
``transcript.json-v2`` and ``jobinfo``; text/plain for ``transcript.txt`` and ``transcript.srt``), or
multipart/form-data with one named file part per item (``data_file`` when ``contents`` is omitted). We keep
the json-v2 transcript if there is one, and the job info (id, tracking reference, errors) from wherever it is.
Each JSON document is checked on its own: one that names another job is refused, whatever the others say.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from notification_flow import jsonv2
from notification_flow.spool import IncomingFile, NotATranscript
from notification_flow.transcripts import TranscriptStore

if TYPE_CHECKING:  # Flask is the server's: cronjob.py checks downloads here without importing it
    from flask import Request

TRANSCRIPT_PARTS = ("transcript", "transcript.json-v2", "data_file")
JSON_TYPES = ("application/json", "application/vnd.speechmatics.v2+json")


class UnreadableBody(Exception):
    """The body claims to be JSON (or a transcript part) but cannot be parsed, or names another job."""

    def __init__(self, message: str, incoming: IncomingFile | None = None) -> None:
        super().__init__(message)
        self.incoming = incoming  # the bytes to keep for an operator, if any


@dataclass
class NotificationBody:
    transcript: IncomingFile | None = None  # this job's complete json-v2 transcript, checked, not yet stored
    info: dict[str, str] = field(default_factory=dict)  # the job's string fields: id, tracking.reference, errors

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
    to the system temp directory, often a RAM disk, where a large part would sit in memory after all."""
    from flask import Request

    class NotificationRequest(Request):
        def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                             filename: str | None = None, content_length: int | None = None) -> BinaryIO:
            return tempfile.TemporaryFile(dir=transcripts.incoming)

    return NotificationRequest


@contextlib.contextmanager
def read_body(request: Request, job_id: str, transcripts: TranscriptStore,
              limit: int) -> Iterator[NotificationBody]:
    """Yield what the body holds; every spool file is removed when the block ends. A body that cannot be
    understood is kept in TRANSCRIPTS_DIR/.unreadable for an operator, then UnreadableBody is raised."""
    with contextlib.ExitStack() as cleanup:
        def spooled(source: BinaryIO) -> IncomingFile:
            incoming = cleanup.enter_context(transcripts.incoming_file(limit))
            shutil.copyfileobj(source, incoming)
            return incoming

        def read_json(incoming: IncomingFile) -> NotificationBody:
            try:
                return _read_json(incoming, job_id)
            except UnreadableBody as error:
                if error.incoming is not None:
                    transcripts.keep_unreadable(job_id, error.incoming)
                raise

        if request.mimetype == "multipart/form-data":
            yield _read_multipart(request, lambda part: read_json(spooled(part)))
            return
        incoming = spooled(request.stream)
        if incoming.size == 0 or request.mimetype not in JSON_TYPES:
            yield NotificationBody()  # empty, or transcript.txt / .srt: the json-v2 must come from the API
        else:
            yield read_json(incoming)


def _read_multipart(request: Request, read_json: Callable[[BinaryIO], NotificationBody]) -> NotificationBody:
    """The transcript from its part, and the job info from the jobinfo part, filling what the transcript lacks."""
    body = NotificationBody()
    for name, part in request.files.items():
        if name == "jobinfo":
            body.info = {**read_json(part.stream).info, **body.info}
        elif name in TRANSCRIPT_PARTS or part.mimetype in JSON_TYPES:
            found = read_json(part.stream)
            body.transcript = body.transcript or found.transcript
            body.info = {**body.info, **found.info}
    return body


def _read_json(incoming: IncomingFile, job_id: str) -> NotificationBody:
    """Parse the whole document (so a truncated one is caught), keeping only the job's string fields; a
    transcript must be this job's, and any other document may name no job or this one."""
    try:
        top_keys, info = jsonv2.read(incoming.reader())
    except jsonv2.NotJson as error:
        raise UnreadableBody(f"body is {error}", incoming) from error
    is_transcript = top_keys >= jsonv2.TRANSCRIPT_KEYS
    if info.get("id") not in ((job_id,) if is_transcript else (None, job_id)):
        raise UnreadableBody(f"body is not for job {job_id!r} (it names {info.get('id')!r})",
                             incoming if is_transcript else None)
    if is_transcript:
        incoming.checked_for, incoming.failed_addons = job_id, info.get(jsonv2.ADDONS_FIELD)
    return NotificationBody(transcript=incoming if is_transcript else None, info=info)


def check_transcript(incoming: IncomingFile, job_id: str) -> None:
    """Raise NotATranscript unless the file is a complete json-v2 transcript of `job_id`, judged and marked
    checked (which publishing requires) as a notification body's transcript is. Downloads go through here;
    notification bodies through `read_body`."""
    try:
        found = _read_json(incoming, job_id)
    except UnreadableBody as error:
        raise NotATranscript(f"the transcript of {job_id} is refused: {error}") from error
    if found.transcript is None:
        raise NotATranscript(f"the transcript of {job_id} is not a json-v2 transcript")
