"""Reading a notification body, whatever shape `contents` gave it, without holding it in memory.

Speechmatics sends nothing (``contents: []``), one item as the whole body (JSON for ``transcript``,
``transcript.json-v2`` and ``jobinfo``; text/plain for ``transcript.txt`` and ``transcript.srt``), or
multipart/form-data with one named file part per item (``data_file`` when ``contents`` is omitted). We keep
the json-v2 transcript if there is one, and the job info (id, tracking reference, errors) from wherever it is.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson
from flask import Request

from notification_flow.api import NOTIFICATION_ERRORS
from notification_flow.transcripts import IncomingFile, TranscriptFiles

TRANSCRIPT_PARTS = ("transcript", "transcript.json-v2", "data_file")
# Where job details live: under `job` in a transcript, at the top level in a jobinfo body.
JOB_FIELDS = ("job.", "id", "created_at", "data_name", "duration", "tracking.", "errors.", "status")
TRANSCRIPT_KEYS = {"format", "job", "results"}
IN_MEMORY_BYTES = 1 << 20  # bodies up to 1 MB are parsed whole; larger ones are streamed
ERROR_FIELD = "errors.item.message"
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
        return self.info.get(ERROR_FIELD)


def request_class(transcripts: TranscriptFiles) -> type[Request]:
    """Flask's Request, but multipart parts are spooled to TRANSCRIPTS_DIR/.incoming: the default spools
    to the system temp directory, often a RAM disk, where a 200 MB part would sit in memory after all."""

    class NotificationRequest(Request):
        def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                             filename: str | None = None, content_length: int | None = None) -> BinaryIO:
            return tempfile.TemporaryFile(dir=transcripts.incoming)

    return NotificationRequest


@contextlib.contextmanager
def read_body(request: Request, job_id: str, transcripts: TranscriptFiles,
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
            if body.job_id not in (None, job_id):
                raise UnreadableBody(f"body is for job {body.job_id!r}, not {job_id!r}", body.transcript)
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
    """Parse the whole document (so a truncated one is caught) keeping only the job's string fields.

    A typical body (a few KB to a few hundred) is parsed with json.load, the fastest way. A larger one never
    sits in memory: Python reads its head only, until the top-level keys show a json-v2 transcript (they
    come before the results), then ijson's C backend parses the rest, building nothing but `job`."""
    source = incoming.reader()
    try:
        if incoming.size <= IN_MEMORY_BYTES:
            document = json.load(source)
            top_keys = set(document) if isinstance(document, dict) else set()
            job = document.get("job") if top_keys >= TRANSCRIPT_KEYS else document
            info = _job_fields(_strings(job, "")) if top_keys else {}
        else:
            top_keys, info = _scan_head(source)
            if top_keys >= TRANSCRIPT_KEYS:
                source.seek(0)
                jobs = list(ijson.items(source, "job"))
                info = _job_fields(_strings(jobs[0] if jobs else {}, ""))
    except (ValueError, ijson.JSONError, ijson.IncompleteJSONError) as error:  # JSON and Unicode errors
        raise UnreadableBody(f"body is not valid JSON: {error}", incoming) from error
    if not top_keys:
        raise UnreadableBody("body is JSON but not an object", incoming)
    info = {key: value for key, value in info.items() if key.startswith(JOB_FIELDS)}
    return NotificationBody(transcript=incoming if top_keys >= TRANSCRIPT_KEYS else None, info=info)


def _scan_head(source: BinaryIO) -> tuple[set[str], dict[str, str]]:
    """Top-level keys and job fields, stopping as soon as the document is known to be a transcript."""
    top_keys: set[str] = set()
    info: dict[str, str] = {}
    for prefix, event, value in ijson.parse(source, buf_size=4096):
        if prefix == "" and event == "map_key":
            top_keys.add(value)
            if top_keys >= TRANSCRIPT_KEYS:
                break
        elif event == "string" and prefix.startswith(JOB_FIELDS):  # ids and reasons are strings
            info.update(_job_fields([(prefix.removeprefix("job."), value)], info))
    return top_keys, info


def _job_fields(fields: Iterable[tuple[str, str]], known: dict[str, str] | None = None) -> dict[str, str]:
    """Job fields by name; of the `errors`, the first that is Speechmatics' reason, not a later failure to
    deliver a notification, which the service appends after it."""
    info = dict(known or {})
    for key, value in fields:
        if key == ERROR_FIELD and (ERROR_FIELD in info or value.startswith(NOTIFICATION_ERRORS)):
            continue
        info[key] = value
    return info


def _strings(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """The string fields of a parsed object, under ijson-style names (`tracking.reference`, `errors.item.message`)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner, f"{prefix}.item")
    elif isinstance(value, str):
        yield prefix, value
