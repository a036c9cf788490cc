"""Unit tests of notification_flow.jsonv2: a document is accepted only if it is complete, strict JSON in UTF-8.

The in-memory check validates `results` without building it, so these tests hold it to json.loads: whatever
json.loads refuses, it refuses too, and what it accepts, it reads exactly as json.loads would. One exception
is stated by a test of its own: an integer of more than 4,300 digits, which json.loads refuses to build (a
CPython safeguard against slow conversion, not a rule of JSON), is accepted in memory where nothing is built.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notification_flow import jsonv2

DOCS_TRANSCRIPT = Path(__file__).parents[1] / "emulator" / "fixtures" / "transcript-json-v2-docs-example.json"
JOB_ID = "650krlru2e"


def transcript() -> bytes:
    document = json.loads(DOCS_TRANSCRIPT.read_text())
    document["job"]["id"] = JOB_ID
    document["job"]["tracking"] = {"reference": "ref", "title": "café"}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()  # compact, as the API sends it


TRANSCRIPT = transcript()


def read(data: bytes) -> tuple[set[str], dict[str, str]]:
    return jsonv2.read(io.BytesIO(data), len(data))


def strict_json(data: bytes) -> Any:
    """json.loads without its extensions: UTF-8 only, no NaN or Infinity."""
    def refuse(constant: str) -> None:
        raise ValueError(constant)
    return json.loads(data.decode("utf-8"), parse_constant=refuse)


@pytest.fixture(params=["whole", "streamed"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "streamed":
        monkeypatch.setattr(jsonv2, "IN_MEMORY_BYTES", 16)
    return str(request.param)


def test_a_transcript_gives_its_keys_and_job_fields(mode: str) -> None:
    top_keys, info = read(TRANSCRIPT)
    assert top_keys >= jsonv2.TRANSCRIPT_KEYS
    assert info["id"] == JOB_ID
    assert info["tracking.title"] == "café"
    assert jsonv2.is_transcript_of(io.BytesIO(TRANSCRIPT), len(TRANSCRIPT), JOB_ID)


def test_every_truncation_is_refused() -> None:
    for end in range(len(TRANSCRIPT) - 1):  # the last byte is the closing brace
        with pytest.raises(jsonv2.NotJson):
            read(TRANSCRIPT[:end])


def word(text: bytes) -> bytes:
    """The transcript with its first word's content replaced by `text` (raw bytes inside the quotes)."""
    first = json.loads(TRANSCRIPT)["results"][0]["alternatives"][0]["content"].encode()
    return TRANSCRIPT.replace(b'"content":"' + first + b'"', b'"content":"' + text + b'"', 1)


@pytest.mark.parametrize(("name", "data"), [
    ("invalid UTF-8 in a word", word(b"\xff\xfe")),
    ("an overlong UTF-8 sequence in a word", word(b"\xc0\xaf")),
    ("a raw newline in a word", word(b"a\nb")),
    ("an unknown escape in a word", word(b"\\q")),
    ("NaN as a confidence", TRANSCRIPT.replace(b'"confidence":1,', b'"confidence":NaN,', 1)),
    ("a trailing comma in results", TRANSCRIPT.replace(b"}]}", b"},]}", 1)),
    ("a byte order mark", b"\xef\xbb\xbf" + TRANSCRIPT),
    ("bytes after the document", TRANSCRIPT + b" x"),
    ("UTF-16", TRANSCRIPT.decode().encode("utf-16")),
    ("an array", b"[" + TRANSCRIPT + b"]"),
    ("an empty object", b"{}"),
])
def test_what_is_not_strict_json_in_utf8_is_refused(mode: str, name: str, data: bytes) -> None:
    assert data != TRANSCRIPT, "the case must change the document"
    with pytest.raises(jsonv2.NotJson):
        read(data)


def test_the_cases_above_change_what_they_claim() -> None:
    assert b'"confidence":1,' in TRANSCRIPT and TRANSCRIPT.endswith(b"}]}")
    assert word(b"x") != TRANSCRIPT


def test_a_jobinfo_document_gives_its_fields_and_no_transcript_keys(mode: str) -> None:
    jobinfo = json.dumps({"id": JOB_ID, "tracking": {"reference": "ref"}, "errors": [
        {"message": "Sending notification failed"}, {"message": "Speechmatics' reason"}], "status": "rejected"})
    top_keys, info = read(jobinfo.encode())
    assert not top_keys >= jsonv2.TRANSCRIPT_KEYS
    assert info == {"id": JOB_ID, "tracking.reference": "ref", "errors.item.message": "Speechmatics' reason",
                    "status": "rejected"}


def expected(data: bytes) -> tuple[set[str], dict[str, str]] | None:
    """What the check must answer, worked out with json.loads: None where the bytes must be refused."""
    try:
        document = strict_json(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or not document:
        return None
    keys = set(document)
    job = document["job"] if keys >= jsonv2.TRANSCRIPT_KEYS else document
    info = jsonv2._job_fields(jsonv2._strings(job, ""))
    return keys, {key: value for key, value in info.items() if key.startswith(jsonv2.JOB_FIELDS)}


@settings(max_examples=400, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(TRANSCRIPT) - 1), byte=st.integers(0, 255),
       delete=st.booleans())
def test_a_changed_byte_is_refused_exactly_when_json_loads_refuses_it(position: int, byte: int, delete: bool) -> None:
    data = TRANSCRIPT[:position] + (b"" if delete else bytes([byte])) + TRANSCRIPT[position + 1:]
    want = expected(data)
    if want is None:
        with pytest.raises(jsonv2.NotJson):
            read(data)
    else:
        assert read(data) == want


def with_number(number: bytes, where: str) -> bytes:
    if where == "job":
        return TRANSCRIPT.replace(b'"id":"', b'"n":' + number + b',"id":"', 1)
    return TRANSCRIPT.replace(b'"results":[', b'"results":[' + number + b",", 1)


def test_a_number_in_job_that_cannot_be_built_is_refused(mode: str) -> None:
    for number in (b"1" * 5000, b"1e400"):
        with pytest.raises(jsonv2.NotJson):
            read(with_number(number, "job"))


def test_a_huge_integer_in_results_never_crashes_the_process(mode: str) -> None:
    """ijson's C backend, left to build Python ints, crashed the process (SIGSEGV) on this; with floats it
    refuses it. In memory, `results` is checked for syntax only, so it is accepted there (see above)."""
    data = with_number(b"1" * 5000, "results")
    if mode == "streamed":
        with pytest.raises(jsonv2.NotJson):
            read(data)
    else:
        assert read(data)[1]["id"] == JOB_ID


@pytest.mark.parametrize("where", ["job", "results"])
def test_a_document_nested_too_deeply_is_refused_not_raised(where: str) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    data = with_number(nested, where)
    with pytest.raises(jsonv2.NotJson, match="nested too deeply"):
        read(data)


def test_a_deeply_nested_document_over_a_megabyte_is_checked_in_little_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ijson's prefixes kept a string per level as long as the path: 3,000 levels took 23 MB, 30,000 took
    2.2 GB. Followed as plain events, depth costs yajl a byte a level; where Python follows (up to the end of
    `job`), more than MAX_FOLLOWED_DEPTH levels are refused."""
    monkeypatch.setattr(jsonv2, "IN_MEMORY_BYTES", 16)
    nested = b"[" * 3000 + b"]" * 3000
    tracemalloc.start()
    try:
        assert read(with_number(nested, "results"))[1]["id"] == JOB_ID  # valid JSON, whatever its depth
        with pytest.raises(jsonv2.NotJson, match="nested too deeply"):
            read(with_number(nested, "job"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def document(*members: str) -> bytes:
    return ("{" + ",".join(members) + "}").encode()


FORMAT, RESULTS = '"format":"2.9"', '"results":[{"type":"word"}]'


@pytest.mark.parametrize(("name", "data", "want"), [
    ("fields beside `job` are not the job's",
     document(FORMAT, '"job":{"id":"650krlru2e","errors":[{"message":"A"}]}', '"id":"other"',
              '"tracking":{"reference":"X"}', '"errors":[{"message":"TOP"}]', RESULTS),
     {"id": JOB_ID, "errors.item.message": "A"}),
    ("fields before `job` are not the job's either",
     document('"id":"other"', FORMAT, '"job":{"data_name":"d"}', RESULTS), {"data_name": "d"}),
    ("a repeated `job`: the last one, never a mix",
     document(FORMAT, '"job":{"id":"650krlru2e","tracking":{"reference":"ref1"}}', '"job":{"id":"second"}', RESULTS),
     {"id": "second"}),
    ("`job` after `results`",
     document(FORMAT, RESULTS, '"job":{"id":"650krlru2e","tracking":{"reference":"r"}}'),
     {"id": JOB_ID, "tracking.reference": "r"}),
])
def test_a_transcripts_fields_come_from_its_job_alone(mode: str, name: str, data: bytes, want: dict[str, str]) -> None:
    top_keys, info = read(data)
    assert top_keys >= jsonv2.TRANSCRIPT_KEYS
    assert info == want
