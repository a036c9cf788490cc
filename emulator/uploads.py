"""Uploads go straight to files in the emulator's temp dir, under a size cap, never into memory.

werkzeug's multipart parser asks the request for a stream per file part; ``UploadRequest`` answers
with a named temp file in the upload dir that refuses to grow past ``max_upload_bytes``. A route
that keeps the file calls ``adopt``; every other temp file is deleted when the request ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

DRAIN_LIMIT = 16 << 20


class CappedFile:
    """A temp file that raises RequestEntityTooLarge once more than ``limit`` bytes are written."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self._handle = handle
        self._limit = limit
        self._size = 0

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > self._limit:
            raise RequestEntityTooLarge(f"data_file exceeds the limit of {self._limit} bytes")
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


class UploadRequest(Request):
    """Flask request whose file parts land in the upload dir (see module docstring)."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        service = current_app.extensions["emulator"]
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in cleanup() or by the adopter
            prefix="upload-", dir=service.upload_dir, delete=False
        )
        self._temp_files().append(handle)
        return CappedFile(handle, service.options.max_upload_bytes)  # type: ignore[return-value]

    def _temp_files(self) -> list[IO[bytes]]:
        if not hasattr(self, "_emulator_temp_files"):
            self._emulator_temp_files: list[IO[bytes]] = []
            self._emulator_adopted: set[str] = set()
        return self._emulator_temp_files

    def adopt(self, stream: Any) -> Path:
        """Keep an uploaded file beyond this request; returns its path."""
        self._temp_files()
        stream.close()
        self._emulator_adopted.add(stream.name)
        return Path(stream.name)

    def cleanup(self) -> None:
        """Delete every temp file of this request that no job adopted."""
        for handle in self._temp_files():
            handle.close()
            if handle.name not in self._emulator_adopted:
                Path(handle.name).unlink(missing_ok=True)

    def drain(self) -> None:
        """Read the unread rest of a modest body before answering.

        werkzeug's server closes the connection after each answer; closing a socket with unread
        request bytes makes the kernel send a reset, and the client may then lose the answer (for
        example an injected 429 on an upload). Huge bodies are not drained: the client is cut off.
        """
        length = self.content_length
        if self.method not in {"POST", "PUT", "PATCH"} or (length is not None and length > DRAIN_LIMIT):
            return
        try:
            stream, total = self.stream, 0
            while total < DRAIN_LIMIT and (chunk := stream.read(1 << 16)):
                total += len(chunk)
        except Exception:  # noqa: S110 - draining is best effort; the answer is already decided
            pass
