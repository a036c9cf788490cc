"""DIAGNOSTIC ONLY, never shipped: our server with one change applied in memory, to measure what the
change would buy (or what a part of the work costs) before anyone touches notification_flow/.

    python -m bench.variants CHANGE [server.py options]     # exactly `python server.py`, plus CHANGE

`ijson-items`, a suggested fix to `notification_flow.payloads._read_json`: instead of running Python code
for every event of `ijson.parse` (thousands for a 20 KB transcript, a million for 200 MB), read only the
head of the document in Python, until the keys `format`, `job` and `results` have been seen, then let
ijson's C backend build the `job` object with `ijson.items(source, "job")`, which parses (and so
validates) the whole document in C and keeps nothing else. Memory stays flat whatever the size. Bodies
that are not transcripts (jobinfo, small by nature) go through the original code. The job fields the
server routes by come out the same, under the same flattened names (`id`, `tracking.reference`,
`errors.item.message`); a malformed or truncated document is refused the same way.

`no-dir-fsync`, NOT a suggestion: skip the directory fsync after linking `<job_id>.json`. Without it a
power cut can lose a transcript that was acknowledged; it runs only to show what that fsync costs, since
the limit, as the benchmark issue defines it, renames without one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from notification_flow import payloads
from notification_flow.storage import IncomingFile

TRANSCRIPT_KEYS = {"format", "job", "results"}
HEAD_BUFFER = 2048  # small reads while looking at the head, so a short body is not parsed twice in full
_original_read_json = payloads._read_json


def flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Scalars under ijson-style prefixes: `a.b` for objects, `a.item` for array members."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}.{key}")
    elif isinstance(value, list):
        for inner in value:
            yield from flatten(inner, f"{prefix}.item")
    elif value is not None:
        yield prefix, value


def is_transcript(source: BinaryIO) -> bool:
    """Whether the top level has the json-v2 keys; in a json-v2 document they come before the results."""
    keys: set[str] = set()
    for prefix, event, value in ijson.parse(source, buf_size=HEAD_BUFFER):
        if prefix == "" and event == "map_key":
            keys.add(value)
            if keys >= TRANSCRIPT_KEYS:
                return True
    return False


def read_json_with_item_builder(incoming: IncomingFile) -> payloads.NotificationBody:
    path = incoming.finish()
    try:
        with path.open("rb") as source:
            if not is_transcript(source):
                return _original_read_json(incoming)
            source.seek(0)
            jobs = list(ijson.items(source, "job"))  # the whole document, in C
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as error:
        raise payloads.UnreadableBody(f"body is not valid JSON: {error}", incoming) from error
    info = {prefix.removeprefix("job."): value for job in jobs for prefix, value in flatten(job, "job")
            if prefix.startswith(payloads.JOB_FIELDS)}
    return payloads.NotificationBody(transcript=incoming, info=info)


def skip_directory_fsync() -> None:
    from notification_flow import storage

    storage._fsync_directory = lambda directory: None


def use_item_builder() -> None:
    payloads._read_json = read_json_with_item_builder


CHANGES = {"ijson-items": use_item_builder, "no-dir-fsync": skip_directory_fsync}


def main() -> int:
    CHANGES[sys.argv[1]]()
    import server

    return server.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
