"""What `server.py` stores as `<job_id>.json`, asked as Speechmatics asks it: an HTTP request to a real server.

A body publishes a transcript only if it is this job's, each part judged on its own and one document judged
the same whatever its size; a damaged file already there is replaced by a valid delivery; a spool that cannot
be written is a 503 for as long as it lasts, and no longer; a publish that fails says in the log which files.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from urllib3 import encode_multipart_formdata

from tests.integration.support import Stack, submit_like_client, wait_for

JSON = "application/json"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These tests are about the files: one database backend is enough."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def finished_job(stack: Stack) -> str:
    """A job that is done at the API and recorded on its row, whose notification is still to come."""
    _, job_id = submit_like_client(stack)
    wait_for(lambda: stack.emulator.job(job_id)["status"] == "done", message=f"job {job_id} to finish")
    return job_id


def published(stack: Stack, job_id: str) -> Path:
    return stack.transcripts / f"{job_id}.json"


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """No entry can be made in the directory, even by root (as on a read-only or immutable mount)."""
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@pytest.mark.parametrize("order", ["transcript first", "jobinfo first"])
def test_a_multipart_body_cannot_publish_another_jobs_transcript(served: Stack, order: str) -> None:
    mine, other = finished_job(served), finished_job(served)
    theirs = served.emulator.transcript_bytes(other)
    jobinfo = json.dumps(json.loads(served.emulator.transcript_bytes(mine))["job"]).encode()  # names this job
    parts = [("transcript", ("transcript.json", theirs, JSON)), ("jobinfo", ("jobinfo.json", jobinfo, JSON))]
    body, content_type = encode_multipart_formdata(parts if order == "transcript first" else parts[::-1])
    answer = served.notify(mine, body=body, content_type=content_type)
    assert answer.status_code == 400, answer.text
    assert not published(served, mine).exists()
    assert served.store().find(mine).status != "done"


@pytest.mark.parametrize("padding", [0, 2 * 1024 * 1024], ids=["small", "over two megabytes"])
def test_a_transcript_with_two_jobs_gets_the_same_answer_whatever_its_size(served: Stack, padding: int) -> None:
    """The last `job` counts, as for json.load: here another job's, so it is not this job's transcript."""
    mine, other = finished_job(served), finished_job(served)
    theirs = json.dumps(json.loads(served.emulator.transcript_bytes(other))["job"]).encode()
    body = (served.emulator.transcript_bytes(mine).rstrip()[:-1] + b',"padding":"' + b" " * padding
            + b'","job":' + theirs + b"}")
    assert json.loads(body)["job"]["id"] == other
    answer = served.notify(mine, body=body, content_type=JSON)
    assert answer.status_code == 400, answer.text
    assert not published(served, mine).exists()


def test_a_damaged_file_of_the_transcripts_size_is_replaced_by_a_valid_delivery(served: Stack) -> None:
    job_id = finished_job(served)
    transcript = served.emulator.transcript_bytes(job_id)
    published(served, job_id).write_bytes(b"\x00" * len(transcript))
    answer = served.notify(job_id, body=transcript, content_type=JSON)
    assert answer.status_code == 200, answer.text
    assert published(served, job_id).read_bytes() == transcript
    assert served.store().find(job_id).status == "done"


def test_a_spool_unwritable_for_a_while_costs_503s_only_while_it_lasts(served: Stack) -> None:
    job_id = finished_job(served)
    transcript = served.emulator.transcript_bytes(job_id)
    spool = served.transcripts / ".incoming"
    with immutable(spool):
        for _ in range(4):  # each worker meets it, whichever answers
            assert served.notify(job_id, body=transcript, content_type=JSON).status_code == 503
    for _ in range(4):
        assert served.notify(job_id, body=transcript, content_type=JSON).status_code == 200
    assert published(served, job_id).read_bytes() == transcript
    assert list(spool.iterdir()) == []


def test_a_failed_publish_names_its_files_in_the_log(served: Stack) -> None:
    job_id = finished_job(served)
    transcript = served.emulator.transcript_bytes(job_id)
    with immutable(served.transcripts):  # `.incoming` below it takes the body; the link to its name fails
        assert served.notify(job_id, body=transcript, content_type=JSON).status_code == 503
    [line] = [line for line in served.server_log().splitlines() if "could not be stored now" in line]
    assert f"{served.transcripts / '.incoming'}/" in line and f"{published(served, job_id)}'" in line, line
    assert not published(served, job_id).exists()
