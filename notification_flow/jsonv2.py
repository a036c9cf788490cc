"""What a notification body or a download holds: a JSON object's top-level keys and the job's string fields.

A document is read as a stream of events from ijson's C backend (yajl), whatever its size, so it never sits
in memory: Python follows the events to the end, remembering only where it is and the job's string fields.
Every byte is parsed, so a truncated document is refused; every key is seen, so of a repeated `job` the
last one counts, as json.load counts it, at any size.

Refused: what is not JSON in UTF-8 (RFC 8259) and json.load's extensions to it (NaN and Infinity, a byte
order mark); a number that does not fit a double (ijson is told to build floats, which also spares the
process a crash on an integer of thousands of digits); nesting deeper than MAX_DEPTH, which json-v2 never
comes near; a vertical tab or form feed, which yajl alone would take for whitespace. yajl reads a lone
surrogate escape as "?": nothing Speechmatics sends has one.
"""

from __future__ import annotations

from typing import BinaryIO

import ijson

TRANSCRIPT_KEYS = {"format", "job", "results"}  # json-v2's top level
MAX_DEPTH = 64  # how deeply a document may nest: the path followed stays small whatever the body
MAX_ADDONS = 8  # failed add-ons named at most: a body cannot make the job's notice grow without bound
# The job's fields: under `job` in a transcript, at the top level in a jobinfo body.
JOB_FIELDS = {"id", "created_at", "data_name", "duration", "tracking", "errors", "status"}
FOLLOWED = JOB_FIELDS | {"job"}  # the top-level keys whose strings are looked at
ERROR_FIELD = "errors.item.message"
ADDONS_FIELD = "metadata.failed_addons"  # a transcript's paid add-ons that failed, from `metadata.<name>_errors`
# How the service words the failures of notification delivery it appends to a job's `errors`.
NOTIFICATION_ERRORS = ("Error in sending notification", "unable to send notification", "Sending notification failed")


class NotJson(ValueError):
    """Not a complete JSON object."""


def read(source: BinaryIO) -> tuple[set[str], dict[str, str]]:
    """The document's top-level keys and the job's string fields (`id`, `tracking.reference`, ...): a
    transcript's from its `job` (with ADDONS_FIELD when an add-on failed), any other object's from its top level."""
    try:
        top_keys, top, job = _follow(source)
    except NotJson:
        raise
    except (ijson.JSONError, ijson.IncompleteJSONError, ValueError) as error:  # and UnicodeDecodeError
        raise NotJson(f"not valid JSON: {error}") from error
    if not top_keys:
        raise NotJson("JSON but not an object")
    return top_keys, job if top_keys >= TRANSCRIPT_KEYS else top


def is_transcript_of(source: BinaryIO, job_id: str) -> bool:
    """Whether the bytes are a complete json-v2 transcript of `job_id`."""
    try:
        top_keys, info = read(source)
    except NotJson:
        return False
    return top_keys >= TRANSCRIPT_KEYS and info.get("id") == job_id


class _StrictWhitespace:
    """The bytes as read, refusing a vertical tab or form feed: JSON allows neither anywhere unescaped, but
    yajl takes both for whitespace between tokens."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        if b"\x0b" in chunk or b"\x0c" in chunk:
            raise NotJson("not valid JSON: a vertical tab or form feed outside a string")
        return chunk


def _follow(source: BinaryIO) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """One pass over yajl's plain events, tracking the key (or "item") at each level above the current one.
    ijson's own prefixes are not used: they keep a string per level as long as the whole path. A failed add-on
    is a key `<name>_errors` of the top-level `metadata`, found on the way."""
    top_keys: set[str] = set()
    top: dict[str, str] = {}  # job fields named from the top level
    job: dict[str, str] = {}  # job fields named from inside `job`
    path: list[str] = []
    addons: dict[str, None] = {}  # failed add-ons, once each, in order
    for event, value in ijson.basic_parse(_StrictWhitespace(source), buf_size=1 << 16, use_float=True):
        if event == "map_key":
            path[-1] = value
            if len(path) == 1:
                top_keys.add(value)
                if value in ("job", "metadata"):  # a repeated key: the last one counts
                    (job if value == "job" else addons).clear()
            elif len(path) == 2 and path[0] == "metadata" and value.endswith("_errors") and len(addons) < MAX_ADDONS:
                addons[value.removesuffix("_errors")] = None
        elif event in ("start_map", "start_array"):
            if len(path) >= MAX_DEPTH:
                raise NotJson("nested too deeply")
            path.append("item")  # a map's entries are renamed by their keys as they come
        elif event in ("end_map", "end_array"):
            path.pop()
        elif event == "string" and path and path[0] in FOLLOWED:
            _keep(top, path, value)
            if path[0] == "job" and len(path) > 1:
                _keep(job, path[1:], value)
    if addons:
        job[ADDONS_FIELD] = ", ".join(addons)
    return top_keys, top, job


def _keep(fields: dict[str, str], path: list[str], value: str) -> None:
    """Keep a job's string field, under an ijson-style name (`tracking.reference`, `errors.item.message`).
    Of the `errors`, the first that is Speechmatics' reason is kept, not a later failure to deliver a
    notification, which the service appends after it."""
    if path[0] not in JOB_FIELDS:
        return
    name = ".".join(path)
    if name == ERROR_FIELD and (name in fields or value.startswith(NOTIFICATION_ERRORS)):
        return
    fields[name] = value
