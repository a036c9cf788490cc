"""Unit tests of notification_flow.jsonv2: a document is accepted only if it is complete, strict JSON in UTF-8.

The check follows a stream of events without building the document, so these tests hold it to json.loads:
whatever json.loads refuses, it refuses too, and what it accepts, it reads exactly as json.loads would.
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
    return jsonv2.read(io.BytesIO(data))


def strict_json(data: bytes) -> Any:
    """json.loads without its extensions: UTF-8 only, no NaN or Infinity."""
    def refuse(constant: str) -> None:
        raise ValueError(constant)
    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def test_a_transcript_gives_its_keys_and_job_fields() -> None:
    top_keys, info = read(TRANSCRIPT)
    assert top_keys >= jsonv2.TRANSCRIPT_KEYS
    assert info["id"] == JOB_ID
    assert info["tracking.title"] == "café"
    assert jsonv2.is_transcript_of(io.BytesIO(TRANSCRIPT), JOB_ID)


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
def test_what_is_not_strict_json_in_utf8_is_refused(name: str, data: bytes) -> None:
    assert data != TRANSCRIPT, "the case must change the document"
    with pytest.raises(jsonv2.NotJson):
        read(data)


def test_the_cases_above_change_what_they_claim() -> None:
    assert b'"confidence":1,' in TRANSCRIPT and TRANSCRIPT.endswith(b"}]}")
    assert word(b"x") != TRANSCRIPT


def test_a_jobinfo_document_gives_its_fields_and_no_transcript_keys() -> None:
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
    return keys, job_fields(job) if isinstance(job, dict) else {}


def job_fields(job: dict[str, Any]) -> dict[str, str]:
    """The string fields of a parsed job, named as the check names them; of the errors, the first real one."""
    fields: dict[str, str] = {}
    delivery_errors = jsonv2.NOTIFICATION_ERRORS

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}.{key}" if name else key)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, f"{name}.item")
        elif isinstance(value, str) and name.split(".")[0] in jsonv2.JOB_FIELDS and (
                name != jsonv2.ERROR_FIELD or (name not in fields and not value.startswith(delivery_errors))):
            fields[name] = value

    walk(job, "")
    return fields


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


@pytest.mark.parametrize("where", ["job", "results"])
def test_a_number_that_cannot_be_built_is_refused_never_crashes_the_process(where: str) -> None:
    """ijson's C backend, left to build Python ints, crashed the process (SIGSEGV) on a huge integer; with
    floats it refuses it."""
    for number in (b"1" * 5000, b"1e400"):
        with pytest.raises(jsonv2.NotJson):
            read(with_number(number, where))


@pytest.mark.parametrize("where", ["job", "results"])
def test_a_document_nested_too_deeply_is_refused_not_raised(where: str) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    data = with_number(nested, where)
    with pytest.raises(jsonv2.NotJson, match="nested too deeply"):
        read(data)


def test_a_large_or_deep_document_is_checked_in_little_memory() -> None:
    """ijson's prefixes kept a string per level as long as the path, so depth once cost memory; followed as
    plain events to at most MAX_DEPTH levels, neither depth nor size does."""
    document = json.loads(TRANSCRIPT)
    document["results"] = document["results"] * (8 * 1024 * 1024 // len(json.dumps(document["results"])))
    large = json.dumps(document).encode()
    deep = with_number(b"[" * (jsonv2.MAX_DEPTH - 3) + b"]" * (jsonv2.MAX_DEPTH - 3), "results")
    tracemalloc.start()
    try:
        assert read(large)[1]["id"] == JOB_ID
        assert read(deep)[1]["id"] == JOB_ID
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(large) > 8_000_000 and peak < 2_000_000


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
def test_a_transcripts_fields_come_from_its_job_alone(name: str, data: bytes, want: dict[str, str]) -> None:
    top_keys, info = read(data)
    assert top_keys >= jsonv2.TRANSCRIPT_KEYS
    assert info == want


@pytest.mark.parametrize("padding", [0, 2 * 1024 * 1024], ids=["small", "over two megabytes"])
def test_one_document_gets_one_answer_whatever_its_size(padding: int) -> None:
    data = document(FORMAT, '"job":{"id":"650krlru2e"}', RESULTS, f'"padding":"{" " * padding}"',
                    '"job":{"id":"second"}')
    assert read(data)[1] == {"id": "second"}
    assert not jsonv2.is_transcript_of(io.BytesIO(data), JOB_ID)


@pytest.mark.parametrize("whitespace", [b"\x0b", b"\x0c"])
def test_a_vertical_tab_or_form_feed_between_tokens_is_refused_as_json_loads_refuses_it(whitespace: bytes) -> None:
    """yajl alone takes both for whitespace; the property test above found them between two tokens."""
    data = TRANSCRIPT.replace(b'"id":', b'"id":' + whitespace, 1)
    assert expected(data) is None
    with pytest.raises(jsonv2.NotJson):
        read(data)


@pytest.mark.parametrize("metadata_first", [True, False])
def test_the_failed_add_ons_of_a_transcript_are_found_wherever_its_metadata_is(metadata_first: bool) -> None:
    metadata = {"metadata": {"created_at": "x", "translation_errors": [{"type": "x"}], "language_identification":
                             {"translation_errors": []}, "summarization_errors": [{}]}}
    rest = {"format": "2.9", "job": {"id": "abcdefghij"}, "results": []}
    document = {**metadata, **rest} if metadata_first else {**rest, **metadata}
    _, info = jsonv2.read(io.BytesIO(json.dumps(document).encode()))
    assert info[jsonv2.ADDONS_FIELD] == "translation, summarization" and info["id"] == "abcdefghij"
    _, plain = jsonv2.read(io.BytesIO(json.dumps(rest).encode()))
    assert jsonv2.ADDONS_FIELD not in plain


def test_failed_add_ons_come_from_the_last_metadata_once_each_and_at_most_a_few() -> None:
    many = {f"x{number}_errors": [] for number in range(1000)}
    document = {"metadata": {"translation_errors": []}, "format": "2.9", "job": {"id": "abcdefghij"}, "results": [],
                "metadata ": {}}
    text = json.dumps(document).replace('"metadata ": {}', '"metadata": {"summarization_errors": [], '
                                        '"summarization_errors": []}')
    _, info = jsonv2.read(io.BytesIO(text.encode()))
    assert info[jsonv2.ADDONS_FIELD] == "summarization"
    _, info = jsonv2.read(io.BytesIO(json.dumps({**document, "metadata": many}).encode()))
    assert info[jsonv2.ADDONS_FIELD].count(",") == jsonv2.MAX_ADDONS - 1
