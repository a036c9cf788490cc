"""What a notification body or a download holds: a JSON object's top-level keys and the job's string fields.

A typical document (a few KB to a few hundred) is read whole and checked by msgspec, which validates every
byte of `results` without building a single word of it: 16 µs for a 20 KB transcript, where json.load spent
175 µs building objects only to drop them, the largest part of a notification's own CPU. A larger document
never sits in memory: ijson's C backend reads it as a stream of events, which Python follows only until the
top-level keys and the job are known (they come before the results), and the rest is checked in C without
building anything. Either way the whole document is parsed, so a truncated one is caught.

Both refuse what is not JSON in UTF-8 (RFC 8259), and json.load's extensions to it: NaN and Infinity, a byte
order mark, and in memory lone surrogate escapes (yajl, above 1 MB, takes a lone high one as "?"). A number
that is built must fit a 64-bit integer or a double: all of them above 1 MB (ijson's C backend is told to use
floats, which also spares the process a crash on a 5,000-digit integer), only `job`'s in memory. A document
nested too deeply is refused: in memory, deeper than Python's recursion limit (about 1,000); above 1 MB,
deeper than 64 levels in the part Python follows, which is all of a document that is not a transcript (any
depth after it costs yajl one byte a level). None of these, nor yajl taking \f as whitespace, is near
anything Speechmatics sends.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import ijson
import msgspec

TRANSCRIPT_KEYS = {"format", "job", "results"}  # json-v2's top level
IN_MEMORY_BYTES = 1 << 20  # documents up to 1 MB are parsed whole; larger ones are streamed
MAX_FOLLOWED_DEPTH = 64  # above 1 MB, how deep the part Python follows may nest (json-v2 needs 5)
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
            top_keys, info = _read_streamed(source)
    except NotJson:
        raise
    except (ValueError, msgspec.DecodeError, ijson.JSONError, ijson.IncompleteJSONError) as error:  # and Unicode
        raise NotJson(f"not valid JSON: {error}") from error
    except RecursionError:
        raise NotJson("nested too deeply") from None
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
    top_keys = set(top)
    document = msgspec.json.decode(top["job"] if top_keys >= TRANSCRIPT_KEYS else data)  # a jobinfo is small
    return top_keys, _job_fields(_strings(document, ""))


def _read_streamed(source: BinaryIO) -> tuple[set[str], dict[str, str]]:
    """Top-level keys and job fields of a document too large to hold, in one pass over yajl's plain events.
    Python follows them, tracking where each one is, only until the keys and the job are known (json-v2 puts
    them before `results`); the rest is drained in C. ijson's own prefixes are not used: it keeps one string
    per level, each as long as the path, so a megabyte nested deeply enough took gigabytes. As in memory, a
    transcript's fields come from its (last) `job` only, any other document's from its top level."""
    events = ijson.basic_parse(source, buf_size=1 << 16, use_float=True)
    top_keys: set[str] = set()
    in_job: dict[str, str] = {}  # job fields under `job`, named from inside it
    anywhere: dict[str, str] = {}  # job fields anywhere, named from the top
    path: list[str | None] = []  # the key or "item" at each level above the current event
    for event, value in events:
        if event == "map_key":
            path[-1] = value
            if len(path) == 1:
                top_keys.add(value)
                if value == "job":
                    in_job.clear()  # a repeated key: the last one counts, as in memory
        elif event in ("start_map", "start_array"):
            if len(path) >= MAX_FOLLOWED_DEPTH:
                raise NotJson("nested too deeply")
            path.append(None if event == "start_map" else "item")
        elif event in ("end_map", "end_array"):
            path.pop()
        elif event == "string":
            name = ".".join(map(str, path))
            _keep(anywhere, name, value)
            if len(path) > 1 and path[0] == "job":
                _keep(in_job, name.removeprefix("job."), value)
        if top_keys >= TRANSCRIPT_KEYS and path[:1] != ["job"]:
            collections.deque(events, maxlen=0)  # the rest, checked without a Python step per event
            return top_keys, in_job
    return top_keys, anywhere


def _keep(info: dict[str, str], name: str, value: str) -> None:
    """Add one string field to `info` if it is a job field (so what is kept never grows with the document)."""
    if name.startswith(JOB_FIELDS):
        info.update(_job_fields([(name, value)], info))


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
