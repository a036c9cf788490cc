"""Transcript storage in S3-compatible object storage: `PREFIX/<job_id>.json` in a bucket, written once.

Several servers and cronjobs on different machines then need no shared filesystem. The guarantee is the local
directory's: the first writer wins, a duplicate writes nothing, a reader never sees half an object. S3 gives it
with a conditional PutObject (`If-None-Match: *`): of two concurrent writes of one key exactly one succeeds,
the other gets 412. A body is received into a local spool file first (TRANSCRIPTS_DIR/.incoming), checked to
be this job's complete json-v2, then streamed from that file in one PutObject, whatever its size: a single
PutObject takes far more than MAX_NOTIFICATION_MB or any transcript Speechmatics makes, so no upload is ever
left half done in the bucket and there is nothing there to clean up.

A 412 is a duplicate: as in the file store, the stored object is read back and kept if it is this job's
complete transcript, else replaced, conditionally on its ETag (`If-Match`), so two replacements never both
win. Every S3 fault (throttling, 5xx, a connection that fails, a timeout) becomes `StorageUnavailable`, an
OSError: the server answers 503 and Speechmatics retries; the reconciler tries again next pass. boto3's own
retries are bounded (`ATTEMPTS`) and each one is logged.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from notification_flow import jsonv2
from notification_flow.settings import SettingsError, split_s3_url
from notification_flow.spool import IncomingFile, NotATranscript, Spool, check_job_id

log = logging.getLogger("storage")
T = TypeVar("T")
ATTEMPTS = 3  # boto3's tries of one request, the first included (throttling, 5xx and connection errors)
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 60


class StorageUnavailable(OSError):
    """The object store cannot do it now (throttled, 5xx, unreachable, timed out): worth trying again."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status S3 answered, if it answered


class StorageConfigError(SettingsError):
    """The object store can never work as configured: no credentials, no bucket, no conditional writes."""


def s3_client(session: Any = None) -> Any:
    """boto3's client, configured the standard way (AWS_* variables, profiles, instance roles), with bounded
    timeouts and retries, each retry logged without any secret."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, max_pool_connections=32,
                    retries={"mode": "standard", "total_max_attempts": ATTEMPTS})
    client = (session or boto3.session.Session()).client("s3", config=config)
    client.meta.events.register("request-created.s3", _log_retry)
    return client


def _log_retry(request: Any, operation_name: str = "", **_: Any) -> None:
    """botocore retries quietly; an operator sees each retry, counted against the bound. Why the last try
    failed is in the StorageUnavailable that follows if every try does."""
    attempt = (request.context.get("retries") or {}).get("attempt", 1)
    if attempt > 1:
        log.warning("S3 %s: try %d of %d", operation_name, attempt, ATTEMPTS)


class TranscriptObjects(Spool):
    """The same interface as TranscriptFiles, on objects: `location` is the object's `s3://` URL. The spool
    (TRANSCRIPTS_DIR) is local: bodies being received, and unreadable ones kept. Its leftovers are the only
    ones: `Spool.remove_leftovers` sweeps them."""

    def __init__(self, url: str, spool: Path | str, client: Any = None) -> None:
        super().__init__(spool)
        self.bucket, self.prefix = split_s3_url("TRANSCRIPTS_URL", url)
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Made on first use, so a gunicorn worker makes its own after the fork."""
        with self._client_lock:
            if self._client is None:
                self._client = s3_client()
            return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def key_for(self, job_id: str, fmt: str = "json") -> str:
        return self._key(f"{check_job_id(job_id)}.{fmt}")

    def location(self, job_id: str) -> str:
        return f"s3://{self.bucket}/{self.key_for(job_id)}"

    def _call(self, operation: str, call: Callable[[], T], allowed: tuple[int, ...] = ()) -> T | None:
        """Run one S3 call; None for an answer with an `allowed` status (404, 412), StorageUnavailable for
        any other failure, described by its code and status, never a request's headers or credentials."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as error:
            status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status in allowed:
                return None
            code = (error.response.get("Error") or {}).get("Code", "error")
            raise StorageUnavailable(f"S3 {operation} s3://{self.bucket}: {code} (HTTP {status})", status) from None
        except BotoCoreError as error:
            raise StorageUnavailable(f"S3 {operation} s3://{self.bucket}: {type(error).__name__}: {error}") from None

    def head(self, key: str) -> dict[str, Any] | None:
        return self._call("HeadObject", lambda: self.client.head_object(Bucket=self.bucket, Key=key), (404,))

    def stored(self, key: str) -> bool:
        return self.head(key) is not None

    def delete(self, key: str) -> bool:
        """Remove the object; False if there was none."""
        if not self.stored(key):
            return False
        self._call("DeleteObject", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        return True

    def exists(self, job_id: str) -> bool:
        """An object, and not an empty one (no transcript is empty): one HEAD."""
        found = self.head(self.key_for(job_id))
        return found is not None and found["ContentLength"] > 0

    def read(self, key: str, judge: Callable[[BinaryIO], T], etag: str | None = None) -> T | None:
        """`judge` of the object (the version `etag` names, if given), copied into the spool and read from there
        to its end (a damaged object can have any size); None if it is not there."""
        with self.incoming_file() as copy:
            body = self._call("GetObject", lambda: self.client.get_object(
                Bucket=self.bucket, Key=key, **({"IfMatch": etag} if etag else {}))["Body"], (404, 412))
            if body is None:
                return None
            with contextlib.closing(body):
                self._call("GetObject", lambda: shutil.copyfileobj(body, copy))
            return judge(copy.reader())

    def publish(self, job_id: str, incoming: IncomingFile) -> bool:
        """Store the transcript as `PREFIX/<job_id>.json` unless it is there; True if this call wrote it. Only
        a file checked to be this job's complete transcript is published."""
        if incoming.checked_for != job_id:
            raise NotATranscript(f"the transcript of {job_id} was not checked before publishing")
        return self.put_once(self.key_for(job_id), incoming, lambda body: jsonv2.is_transcript_of(body, job_id))

    def put_once(self, key: str, incoming: IncomingFile, valid: Callable[[BinaryIO], bool],
                 content_type: str = "application/json") -> bool:
        """Store the spool file as `key` (the json-v2; formats.py's srt and txt) unless it is there; True if this
        call wrote it. A 412 is a duplicate: a stored object that `valid` accepts is kept, as the file store keeps
        its file; one it refuses is replaced, on the condition that it is still the object we judged (If-Match)."""
        incoming.finish()
        if self._upload(key, incoming, {"IfNoneMatch": "*"}, content_type):
            return True
        found = self.head(key)
        if found is not None and self.read(key, valid, found["ETag"]):
            return False
        if found is not None and self._upload(key, incoming, {"IfMatch": found["ETag"]}, content_type):
            log.warning("%s: replaced a stored object that was not what it claims", key)
            return True
        # Deleted, or replaced by another writer, while we looked: the caller's next try decides (503, next pass).
        raise StorageUnavailable(f"{key}: the stored object changed while we looked; try again")

    def _upload(self, key: str, incoming: IncomingFile, condition: dict[str, str], content_type: str) -> bool:
        """One conditional PutObject, streamed from the spool file (boto3 reads a file object in chunks, so
        memory does not grow with the size); False when the condition failed (412), or the object vanished
        under an If-Match (404)."""
        source = incoming.reader()
        written = self._call("PutObject", lambda: self.client.put_object(
            Bucket=self.bucket, Key=key, Body=source, ContentLength=incoming.size,
            ContentType=content_type, **condition), (404, 412))
        return written is not None

    def check_ready(self) -> None:
        """For /readyz: the spool takes a file and the bucket answers; OSError (StorageUnavailable) if not."""
        super().check_ready()
        self._call("HeadBucket", lambda: self.client.head_bucket(Bucket=self.bucket))

    def check(self) -> TranscriptObjects:
        """At start-up: credentials, the bucket, and conditional writes honoured, or one line (exit 2)."""
        import boto3

        session = boto3.session.Session()
        if session.get_credentials() is None:  # botocore's chain: variables, profile, container or instance role
            raise StorageConfigError("TRANSCRIPTS_URL: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role")
        self._client = s3_client(session)
        self._check_bucket()
        self._probe_conditional_writes()
        return self

    def _check_bucket(self) -> None:
        try:
            self._call("HeadBucket", lambda: self.client.head_bucket(Bucket=self.bucket))
        except StorageUnavailable as error:
            status = error.status
            if status == 404:
                raise StorageConfigError(f"TRANSCRIPTS_URL: bucket {self.bucket} does not exist") from None
            if status in (400, 401, 403):
                raise StorageConfigError(f"TRANSCRIPTS_URL: access to bucket {self.bucket} refused ({status}): "
                                         "check the credentials and the IAM permissions (README)") from None
            raise

    def _probe_conditional_writes(self) -> None:
        """Write one probe object twice with If-None-Match: *; a store that lets the second write through
        would let duplicates overwrite transcripts. Nothing is written locally: a store refused at start-up
        leaves nothing behind."""
        key = self._key(f".probe-{uuid.uuid4().hex}")

        def put() -> bool:
            return self._call("PutObject", lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=b"{}", IfNoneMatch="*"), (412,)) is not None

        try:
            first = put()
            second = first and put()
        except StorageUnavailable as error:
            if error.status in (400, 401, 403):
                raise StorageConfigError(f"TRANSCRIPTS_URL: writing to {self.bucket} refused: check the IAM "
                                         "permissions (README)") from None
            raise
        finally:
            with contextlib.suppress(StorageUnavailable):
                self._call("DeleteObject", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        if not first or second:
            raise StorageConfigError(f"TRANSCRIPTS_URL: the store at {self.client.meta.endpoint_url} does not honour "
                                     "conditional writes (If-None-Match: *), so a duplicate could overwrite a "
                                     "transcript; use a store that does (AWS S3 since 2024-08, SeaweedFS)")

