"""TranscriptObjects against a real S3-compatible store (SeaweedFS), in process: the publishing rules that the
process-level flow in test_s3.py cannot aim at one by one.

Concurrent writers of one transcript, small or large (every transcript goes up in one PUT): exactly one
writes it, and memory does not grow with its size. A duplicate, even of different bytes, writes nothing: the
first stored is kept. A stored object that is not a valid transcript is replaced. Housekeeping
never touches an upload in the bucket: we start none, and another application's are its own.
"""

from __future__ import annotations

import json
import logging
import threading
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from notification_flow.objects import TranscriptObjects
from notification_flow.payloads import check_transcript
from seaweed import SeaweedFS
from tests.stores import holds_transcript


def transcript(job_id: str, words: int = 10, spacing: str = "") -> bytes:
    """A json-v2 transcript of `job_id`, about 100 bytes a word; `spacing` changes its bytes, not its meaning."""
    results = [{"type": "word", "start_time": n, "end_time": n + 0.5,
                "alternatives": [{"content": f"word{n}", "confidence": 0.9}]} for n in range(words)]
    document = {"format": "2.9", "job": {"id": job_id}, "metadata": {}, "results": results}
    return json.dumps(document, indent=spacing or None).encode()


@pytest.fixture
def store(seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TranscriptObjects:
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    bucket = seaweedfs.new_bucket(f"u-{uuid.uuid4().hex[:24]}")
    return TranscriptObjects(f"s3://{bucket}/t", tmp_path / "spool").ensure_directories().check()


def publish(store: TranscriptObjects, job_id: str, body: bytes) -> bool:
    with store.incoming_file() as incoming:
        incoming.write(body)
        check_transcript(incoming, job_id)
        return store.publish(job_id, incoming)


def stored(store: TranscriptObjects, job_id: str) -> bytes:
    return store.client.get_object(Bucket=store.bucket, Key=store.key_for(job_id))["Body"].read()


def at_once(count: int, work: Callable[[], bool]) -> list[bool]:
    """`work()` from `count` threads released together; their results."""
    start, results = threading.Barrier(count), list[bool]()
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        result = work()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("words", [10, 200_000], ids=["small", "large"])
def test_of_concurrent_writers_of_one_transcript_exactly_one_writes(store: TranscriptObjects, words: int) -> None:
    """The large body (about 20 MB) is above the size at which uploads once went up in parts: one
    conditional PUT decides between the writers whatever the size."""
    job_id = "concurrent01"
    body = transcript(job_id, words=words)
    written = at_once(4, lambda: publish(store, job_id, body))
    assert sorted(written) == [False, False, False, True]
    assert stored(store, job_id) == body
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads") or []
    assert uploads == []  # no upload is ever started, so none can be left


def test_a_large_transcript_is_streamed_from_the_spool_file(store: TranscriptObjects) -> None:
    """boto3 reads the spool file in chunks: what Python allocates while publishing stays a small fraction
    of the body."""
    job_id = "largebody01"
    body = transcript(job_id, words=400_000)
    with store.incoming_file() as incoming:
        incoming.write(body)
        check_transcript(incoming, job_id)
        tracemalloc.start()
        try:
            assert store.publish(job_id, incoming) is True
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < len(body) // 4, (peak, len(body))
    assert stored(store, job_id) == body


def test_a_duplicate_writes_nothing_and_the_first_stored_is_kept(store: TranscriptObjects) -> None:
    """A duplicate of the same bytes, or of different bytes of a transcript of the same job: the stored
    object is this job's complete transcript, so it is kept."""
    job_id = "divergent01"
    first, second = transcript(job_id), transcript(job_id, spacing=" ")
    assert publish(store, job_id, first) is True
    assert publish(store, job_id, first) is False
    assert publish(store, job_id, second) is False
    assert stored(store, job_id) == first


def test_a_stored_object_that_is_not_a_transcript_is_replaced(store: TranscriptObjects,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    job_id = "damaged0001"
    store.client.put_object(Bucket=store.bucket, Key=store.key_for(job_id), Body=b'{"format": "2.9", "job"')
    assert store.exists(job_id) and not holds_transcript(store, job_id)
    body = transcript(job_id)
    with caplog.at_level(logging.WARNING, logger="storage"):
        assert publish(store, job_id, body) is True
    assert stored(store, job_id) == body and holds_transcript(store, job_id)
    assert any("replaced a stored object" in r.getMessage() for r in caplog.records)


def test_housekeeping_leaves_every_upload_in_the_bucket_alone(seaweedfs: SeaweedFS, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Another application may share the bucket and have uploads under way, however old: a cronjob pass
    (`remove_leftovers`) never touches them, under our prefix or not, named like our objects or not. We start
    no upload of our own (every transcript is one PUT), so there is none of ours to clean up either."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    bucket = seaweedfs.new_bucket(f"h-{uuid.uuid4().hex[:24]}")
    client = seaweedfs.client()
    keys = {"t/abcdefgh12.json", "t/their-video.mp4", "abcdefgh34.json", "other/big.bin"}
    for key in keys:
        client.create_multipart_upload(Bucket=bucket, Key=key)

    def listed() -> set[str]:
        return {upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []}

    whole_bucket = TranscriptObjects(f"s3://{bucket}", tmp_path / "a").ensure_directories()
    prefixed = TranscriptObjects(f"s3://{bucket}/t", tmp_path / "b").ensure_directories()
    assert whole_bucket.remove_leftovers(incoming_seconds=0) == 0
    assert prefixed.remove_leftovers(incoming_seconds=0) == 0
    assert listed() == keys
