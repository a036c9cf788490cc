"""What a notification body or a download holds: a JSON object's top-level keys and the job's string fields.

A typical document (a few KB to a few hundred) is read whole and checked by msgspec, which validates every
byte of `results` without building a single word of it: 16 µs for a 20 KB transcript, where json.load spent
175 µs building objects only to drop them, the largest part of a notification's own CPU. A larger document
never sits in memory: Python reads its head only, until the top-level keys show a json-v2 transcript (they
come before the results), then ijson's C backend parses the rest, building nothing but `job`. Either way the
whole document is parsed, so a truncated one is caught.

Both accept only strict JSON in UTF-8 (RFC 8259): no NaN, no byte order mark, no invalid UTF-8 anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import ijson
import msgspec

TRANSCRIPT_KEYS = {"format", "job", "results"}  # json-v2's top level
IN_MEMORY_BYTES = 1 << 20  # documents up to 1 MB are parsed whole; larger ones are streamed
# Where job details live: under `job` in a transcript, at the top level in a jobinfo body.
JOB_FIELDS = ("job.", "id", "created_at", "data_name", "duration", "tracking.", "errors.", "status")
ERROR_FIELD = "errors.item.message"
# How the service words the failures of notification delivery it appends to a job's `errors`.
NOTIFICATION_ERRORS = ("Error in sending notification", "unable to send notification", "Sending notification failed")


class NotJson(ValueError):
    """Not a complete JSON object."""


# The top level of any JSON object, each value checked to be valid JSON but kept as its bytes, not built.
_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])


def read(source: BinaryIO, size: int) -> tuple[set[str], dict[str, str]]:
    """The document's top-level keys and the job's string fields (`id`, `tracking.reference`, ...)."""
    try:
        if size <= IN_MEMORY_BYTES:
            top_keys, info = _read_whole(source.read())
        else:
            top_keys, info = _scan_head(source)
            if top_keys >= TRANSCRIPT_KEYS:
                source.seek(0)
                jobs = list(ijson.items(source, "job"))
                info = _job_fields(_strings(jobs[0] if jobs else {}, ""))
    except (ValueError, msgspec.DecodeError, ijson.JSONError, ijson.IncompleteJSONError) as error:  # and Unicode
        raise NotJson(f"not valid JSON: {error}") from error
    if not top_keys:
        raise NotJson("JSON but not an object")
    return top_keys, {key: value for key, value in info.items() if key.startswith(JOB_FIELDS)}


def is_transcript_of(path_source: BinaryIO, size: int, job_id: str) -> bool:
    """Whether the bytes are a complete json-v2 transcript of `job_id`."""
    try:
        top_keys, info = read(path_source, size)
    except NotJson:
        return False
    return top_keys >= TRANSCRIPT_KEYS and info.get("id") == job_id


def _read_whole(data: bytes) -> tuple[set[str], dict[str, str]]:
    """Top-level keys and job fields of a document in memory. msgspec does not check the UTF-8 of what it
    skips, so the bytes are decoded first (1 µs for 20 KB); a top level that is not an object has no keys."""
    data.decode("utf-8")
    try:
        top = _TOP_LEVEL.decode(data)
    except msgspec.ValidationError:  # valid JSON, but an array, a string, a number...
        return set(), {}
    if set(top) >= TRANSCRIPT_KEYS:
        return set(top), _job_fields(_strings(msgspec.json.decode(top["job"]), ""))
    return set(top), _job_fields(_strings({key: msgspec.json.decode(value) for key, value in top.items()}, ""))


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
