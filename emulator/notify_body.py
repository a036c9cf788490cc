"""The body of a notification request, laid out by the documented ``contents`` rules.

* ``contents: []`` -> empty body.
* exactly one of ``transcript``, ``transcript.json-v2``, ``jobinfo`` -> that JSON as the body.
* exactly one of ``transcript.txt``, ``transcript.srt`` -> that text as the body (text/plain).
* ``data``, or two or more items -> multipart/form-data, one file part per item, named after it.
* no ``contents`` at all -> the json-v2 transcript as the multipart file part ``data_file``.

Items that do not exist (transcripts of a rejected job, media that was deleted) are left out while
the layout stays as if they existed, as the API reference describes. The multipart body streams the
media from disk, so a 1 GB ``data`` attachment never sits in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from posixpath import basename
from typing import Any
from urllib.parse import urlsplit

from emulator import transcripts
from emulator.jobs import Job

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
JSON_ITEMS = {"transcript", "transcript.json-v2", "jobinfo"}
TEXT_ITEMS = {"transcript.txt", "transcript.srt", "text"}
FILENAMES = {
    "jobinfo": "jobinfo.json",
    "transcript": "transcript.json",
    "transcript.json-v2": "transcript.json",
    "data_file": "transcript.json",
    "transcript.txt": "transcript.txt",
    "transcript.srt": "transcript.srt",
}


@dataclass(frozen=True)
class Outputs:
    """A consistent snapshot of what a job can attach, taken under the job table's lock."""

    info: dict[str, Any]
    transcript: dict[str, Any] | None
    data_path: Path | None
    data_filename: str

    @classmethod
    def of(cls, job: Job) -> Outputs:
        fetch_url = (job.config.get("fetch_data") or {}).get("url", "")
        filename = job.data_name or basename(urlsplit(fetch_url).path) or "data"
        return cls(job.info(), job.transcript, job.data_path, filename)

    def item(self, name: str) -> bytes | Path | None:
        """The content of one item, or None when the job does not have it."""
        if name == "jobinfo":
            return transcripts.dump_json(self.info)
        if name == "data":
            return self.data_path if self.data_path and self.data_path.exists() else None
        if self.transcript is None:
            return None
        if name in {"transcript", "transcript.json-v2", "data_file"}:
            return transcripts.dump_json(self.transcript)
        if name == "transcript.txt":
            return transcripts.render_txt(self.transcript).encode()
        if name == "transcript.srt":
            return transcripts.render_srt(self.transcript).encode()
        return None  # "text" (alignment input) never exists for a transcription job


@dataclass(frozen=True)
class Body:
    data: bytes | MultipartBody
    content_type: str | None


def build_body(contents: list[str] | None, outputs: Outputs) -> Body:
    if contents is None:
        return _multipart([("data_file", outputs.item("data_file"))], outputs)
    if not contents:
        return Body(b"", None)
    if len(contents) == 1 and contents[0] != "data":
        content = outputs.item(contents[0])
        assert not isinstance(content, Path)
        return Body(content or b"", JSON if contents[0] in JSON_ITEMS else TEXT)
    return _multipart([(name, outputs.item(name)) for name in contents], outputs)


def _multipart(items: list[tuple[str, bytes | Path | None]], outputs: Outputs) -> Body:
    boundary = uuid.uuid4().hex
    parts = [
        (name, FILENAMES.get(name, outputs.data_filename), _part_type(name), content)
        for name, content in items
        if content is not None
    ]
    return Body(MultipartBody(boundary, parts), f"multipart/form-data; boundary={boundary}")


def _part_type(name: str) -> str:
    if name == "data":
        return "application/octet-stream"
    return TEXT if name in TEXT_ITEMS else JSON


class MultipartBody:
    """A file-like multipart body with a known length: requests sends Content-Length and streams it."""

    CHUNK = 1 << 16

    def __init__(self, boundary: str, parts: list[tuple[str, str, str, bytes | Path]]) -> None:
        self._segments: list[bytes | Path] = []
        for name, filename, content_type, content in parts:
            header = (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{_quote(filename)}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            )
            self._segments += [header.encode(), content, b"\r\n"]
        self._segments.append(f"--{boundary}--\r\n".encode())
        self._length = sum(s.stat().st_size if isinstance(s, Path) else len(s) for s in self._segments)
        self._chunks = self._generate()
        self._buffer = b""

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return self._generate()

    def _generate(self) -> Iterator[bytes]:
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            with segment.open("rb") as handle:
                while chunk := handle.read(self.CHUNK):
                    yield chunk

    def read(self, size: int = -1) -> bytes:
        """http.client reads file-like bodies block by block; serve them from the segment generator."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _quote(filename: str) -> str:
    return filename.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
