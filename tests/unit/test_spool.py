"""The spool in TRANSCRIPTS_DIR/.incoming: a body is written to a `.part` file there, then linked to `<job_id>.json`.

A link never replaces: a duplicate writes nothing, unless what is there is not this job's transcript.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from notification_flow.spool import IncomingFile, NotATranscript
from notification_flow.transcripts import TranscriptFiles
from tests.stores import holds_transcript
from tests.unit.support import held_open

JOB_ID = "650krlru2e"
BODY = json.dumps({"format": "2.9", "job": {"id": JOB_ID}, "results": []}).encode()


@pytest.fixture
def files(tmp_path: Path) -> TranscriptFiles:
    return TranscriptFiles(tmp_path / "transcripts").ensure_directories()


def received(incoming: IncomingFile, body: bytes = BODY, job_id: str = JOB_ID) -> IncomingFile:
    incoming.write(body)
    incoming.checked_for = job_id  # what payloads.check_transcript says of a complete transcript
    return incoming


def test_a_body_is_spooled_to_a_named_part_file(files: TranscriptFiles) -> None:
    with files.incoming_file() as incoming:
        assert Path(incoming.name).parent == files.incoming and incoming.name.endswith(".part")
        assert os.listdir(files.incoming) == [Path(incoming.name).name]
    assert os.listdir(files.incoming) == []


def test_a_retried_download_starts_the_file_again(files: TranscriptFiles) -> None:
    with files.incoming_file() as incoming:
        incoming.write(b"half of it")
        incoming.restart()
        incoming.write(BODY)
        assert incoming.size == len(BODY) and incoming.reader().read() == BODY
def test_a_published_body_is_the_file_and_nothing_is_left(files: TranscriptFiles) -> None:
    with files.incoming_file() as incoming:
        assert files.publish(JOB_ID, received(incoming)) is True
        assert (files.directory / f"{JOB_ID}.json").read_bytes() == BODY
    assert os.listdir(files.incoming) == []
    assert held_open(files.incoming) == []
    assert sorted(os.listdir(files.directory)) == [".incoming", ".unreadable", f"{JOB_ID}.json"]


def test_a_second_body_for_the_same_job_writes_nothing(files: TranscriptFiles) -> None:
    with files.incoming_file() as first:
        assert files.publish(JOB_ID, received(first)) is True
    other = BODY.replace(b'"results": []', b'"results": [ ]')
    with files.incoming_file() as second:
        assert files.publish(JOB_ID, received(second, other)) is False
    assert (files.directory / f"{JOB_ID}.json").read_bytes() == BODY
    assert os.listdir(files.incoming) == []


def test_a_file_there_that_is_no_transcript_is_replaced(files: TranscriptFiles) -> None:
    (files.directory / f"{JOB_ID}.json").write_bytes(b'{"half": ')
    with files.incoming_file() as incoming:
        assert files.publish(JOB_ID, received(incoming)) is True
    assert (files.directory / f"{JOB_ID}.json").read_bytes() == BODY
    assert os.listdir(files.incoming) == []


def test_an_unchecked_body_is_never_published(files: TranscriptFiles) -> None:
    with files.incoming_file() as incoming:
        incoming.write(BODY)
        with pytest.raises(NotATranscript):
            files.publish(JOB_ID, incoming)
    assert not (files.directory / f"{JOB_ID}.json").exists()


def test_an_unreadable_body_is_kept_once(files: TranscriptFiles) -> None:
    for body in (b"not json", b"not json either"):
        with files.incoming_file() as incoming:
            incoming.write(body)
            kept = files.keep_unreadable(JOB_ID, incoming)
    assert kept.read_bytes() == b"not json"
    assert os.listdir(files.incoming) == []


def test_a_discarded_body_leaves_nothing(files: TranscriptFiles) -> None:
    with pytest.raises(RuntimeError), files.incoming_file() as incoming:
        incoming.write(BODY)
        incoming.finish()
        raise RuntimeError("the request failed")
    assert incoming.file.closed
    assert os.listdir(files.incoming) == []
    assert held_open(files.incoming) == []


def test_a_damaged_file_of_the_transcripts_size_is_replaced_and_not_valid(files: TranscriptFiles) -> None:
    """A file of the right size is not yet the right file: neither the sweep's look at its ends (`exists`)
    nor a full read (`holds_transcript`, the test of publishing) takes a zeroed one."""
    (files.directory / f"{JOB_ID}.json").write_bytes(b"\x00" * len(BODY))
    assert not files.exists(JOB_ID) and not holds_transcript(files, JOB_ID)
    with files.incoming_file() as incoming:
        assert files.publish(JOB_ID, received(incoming)) is True
    assert (files.directory / f"{JOB_ID}.json").read_bytes() == BODY and holds_transcript(files, JOB_ID)


def test_another_jobs_transcript_is_not_valid(files: TranscriptFiles) -> None:
    (files.directory / f"{JOB_ID}.json").write_bytes(BODY.replace(JOB_ID.encode(), b"otherjob99"))
    assert not holds_transcript(files, JOB_ID)
    assert not holds_transcript(files, "nothing000")


def test_leftovers_of_a_killed_worker_are_swept(files: TranscriptFiles) -> None:
    left = files.incoming / "tmpkilled.part"
    left.write_bytes(b"half a bo")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    with files.incoming_file() as current:
        assert files.remove_leftovers() == 1
        assert os.listdir(files.incoming) == [Path(current.name).name]  # one being written stays


@pytest.mark.parametrize("kind", ["fifo", "directory", "empty", "cut", "whole"])
def test_the_sweeps_look_at_a_file_takes_only_a_whole_regular_transcript(files: TranscriptFiles, kind: str) -> None:
    """The repair sweep asks this of every file: something else at the name (a FIFO must not make it wait for a
    writer) or a file cut short is missing, so it is fetched again."""
    path = files.directory / f"{JOB_ID}.json"
    {"fifo": lambda: os.mkfifo(path), "directory": path.mkdir, "empty": path.touch,
     "cut": lambda: path.write_bytes(BODY[: len(BODY) // 2]), "whole": lambda: path.write_bytes(BODY)}[kind]()
    assert files.exists(JOB_ID) is (kind == "whole")
