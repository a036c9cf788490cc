"""The spool in TRANSCRIPTS_DIR/.incoming: a body is written to a file there, then linked to `<job_id>.json`.

Where the filesystem allows, that file has no name (O_TMPFILE), so a killed process leaves nothing behind;
elsewhere it is a `.part` file. Both ways must publish the same bytes with the same rules.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from notification_flow.transcripts import IncomingFile, NotATranscript, TranscriptFiles
from tests.unit.support import held_open

JOB_ID = "650krlru2e"
BODY = json.dumps({"format": "2.9", "job": {"id": JOB_ID}, "results": []}).encode()


@pytest.fixture(params=["unnamed", "named"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> TranscriptFiles:
    files = TranscriptFiles(tmp_path / "transcripts").ensure_directories()
    if request.param == "named":
        files._unnamed = False  # as on a filesystem without O_TMPFILE (NFS)
    return files


def received(incoming: IncomingFile, body: bytes = BODY, job_id: str = JOB_ID) -> IncomingFile:
    incoming.write(body)
    incoming.checked_for = job_id  # what payloads.check_transcript says of a complete transcript
    return incoming


def test_unnamed_files_are_used_where_the_filesystem_allows(tmp_path: Path) -> None:
    files = TranscriptFiles(tmp_path / "transcripts").ensure_directories()
    with files.incoming_file() as incoming:
        assert incoming.name is None
        assert os.listdir(files.incoming) == []  # nothing named, not even while it is written
        assert held_open(files.incoming) != []


def test_where_unnamed_files_fail_named_ones_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    files = TranscriptFiles(tmp_path / "transcripts").ensure_directories()
    with files.incoming_file() as incoming:
        assert incoming.name is not None and Path(incoming.name).parent == files.incoming
        assert files.publish(JOB_ID, received(incoming))
    assert (files.directory / f"{JOB_ID}.json").read_bytes() == BODY


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


def test_a_store_that_only_spools_holds_no_descriptor(tmp_path: Path) -> None:
    """One descriptor of /proc/self/fd serves every store of a process: the S3 check's scratch store, which
    spools a probe and is dropped, leaves nothing open."""
    def spool_once(number: int) -> None:
        files = TranscriptFiles(tmp_path / f"transcripts{number}").ensure_directories()
        with files.incoming_file() as incoming:
            incoming.write(BODY)
            incoming.finish()
    spool_once(0)  # the process's first store opens the shared one
    before = len(os.listdir("/proc/self/fd"))
    for number in range(1, 11):
        spool_once(number)
    assert len(os.listdir("/proc/self/fd")) == before
