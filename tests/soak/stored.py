"""Where the soak's servers and cronjobs stored the transcripts, for the checks: the shared directory, or
(`--storage s3`) a bucket on a real SeaweedFS the soak started, read back with boto3."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class StoredTranscripts:
    """The transcripts as stored: their names, their bytes, where a row should say each one is, and when
    each was stored."""

    def __init__(self, directory: Path, url: str | None = None, seaweedfs: Any = None) -> None:
        self.directory, self.url, self.seaweedfs = directory, url, seaweedfs
        self.bucket, _, self.prefix = (url or "").removeprefix("s3://").partition("/")

    def location(self, job_id: str) -> str:
        """What a done row's `transcript` must say."""
        if self.url:
            return f"{self.url}/{job_id}.json"
        return str((self.directory / f"{job_id}.json").resolve())

    def matches(self, recorded: str | None, job_id: str) -> bool:
        if not recorded:
            return False
        return recorded == self.location(job_id) if self.url else Path(recorded).resolve() == Path(
            self.location(job_id))

    def _objects(self) -> list[dict[str, Any]]:
        pages = self.seaweedfs.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                  Prefix=f"{self.prefix}/")
        return [item for page in pages for item in page.get("Contents") or []]

    def job_ids(self) -> set[str]:
        if self.url:
            return {item["Key"].rsplit("/", 1)[-1].removesuffix(".json") for item in self._objects()}
        return {path.stem for path in self.directory.glob("*.json")}

    def read(self, job_id: str) -> bytes | None:
        if not self.url:
            path = self.directory / f"{job_id}.json"
            return path.read_bytes() if path.is_file() else None
        client = self.seaweedfs.client()
        try:
            return client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{job_id}.json")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def stored_times(self) -> list[float]:
        """When each was stored: a file's ctime (when it was linked into place), an object's LastModified."""
        if self.url:
            return [item["LastModified"].timestamp() for item in self._objects()]
        return [path.stat().st_ctime for path in self.directory.glob("*.json")]
