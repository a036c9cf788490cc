"""The local spool under TRANSCRIPTS_DIR, which both transcript stores (files and objects) receive through.

Every body is first written to a named `.part` file in `.incoming`, where it is checked before it is
published; a body we could not understand is kept in `.unreadable` for an operator. A killed process's
`.part` files are swept by `remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

# Speechmatics job ids are 10 lowercase letters and digits today; a little slack in length, none in the
# alphabet: nothing that passes this can name another directory.
JOB_ID_PATTERN = re.compile(r"[a-z0-9]{8,32}")


class InvalidJobId(ValueError):
    """The id cannot be a Speechmatics job id, so it must never become part of a path."""


class NotATranscript(ValueError):
    """Not a complete json-v2 transcript of the job it would be published as: never published."""


class BodyTooLarge(Exception):
    """More bytes than the limit the file was made with."""


def check_job_id(job_id: str | None) -> str:
    if not job_id or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidJobId("job id must be 8 to 32 lowercase letters and digits")
    return job_id


class IncomingFile:
    """A `.part` file in `.incoming` that counts what is written and refuses to grow past a limit. Anything
    that writes bytes (a download) can be given one as a plain binary file: `write`, and `restart` to begin
    the same download again."""

    def __init__(self, directory: Path, limit: int | None = None, mode: int = 0o600) -> None:
        handle, self.name = tempfile.mkstemp(dir=directory, suffix=".part")
        os.fchmod(handle, mode)  # the published file is this inode: TRANSCRIPTS_MODE decides who may read it
        self.file: BinaryIO = os.fdopen(handle, "w+b")
        self.size = 0
        self.limit = limit
        self.checked_for: str | None = None  # the job whose complete json-v2 transcript this was found to be
        self.failed_addons: str | None = None  # that transcript's failed add-ons, "translation, summarization"

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise BodyTooLarge(f"body larger than {self.limit} bytes")
        return self.file.write(chunk)

    def restart(self) -> None:
        """Empty the file for another try at the same download."""
        self.file.seek(0)
        self.file.truncate()
        self.size = 0
        self.checked_for = self.failed_addons = None

    def finish(self) -> None:
        """Make the bytes durable before anyone can link to them."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def reader(self) -> BinaryIO:
        """The written bytes from the start, through the same handle."""
        self.file.flush()
        self.file.seek(0)
        return self.file

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):  # gone if it was published by renaming it
            os.unlink(self.name)


class Spool:
    """TRANSCRIPTS_DIR's `.incoming` and `.unreadable`."""

    def __init__(self, directory: Path | str, mode: int = 0o600) -> None:
        self.directory = Path(directory).resolve()
        self.mode = mode  # of every file received, so of every transcript published from one (TRANSCRIPTS_MODE)
        self.incoming = self.directory / ".incoming"
        self.unreadable = self.directory / ".unreadable"

    def ensure_directories(self) -> Self:
        for path in (self.directory, self.incoming, self.unreadable):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @contextlib.contextmanager
    def incoming_file(self, limit: int | None = None) -> Iterator[IncomingFile]:
        """A `.part` file that is always removed, whether or not it was published."""
        incoming = IncomingFile(self.incoming, limit, self.mode)
        try:
            yield incoming
        finally:
            incoming.discard()

    def check_ready(self) -> None:
        """For /readyz: OSError unless a body could be received and published now. The probe does what the
        file store's publishing does, a file in `.incoming` linked into the directory, so that the two fail
        together; the object store adds its bucket."""
        with self.incoming_file() as probe:
            probe.write(b"ready")
            probe.finish()
            linked = self.directory / f".ready-{os.path.basename(probe.name)}"
            os.link(probe.name, linked)
            os.unlink(linked)

    def keep_unreadable(self, job_id: str, incoming: IncomingFile) -> Path:
        """Keep a body we could not understand, so that an operator can see what was sent: one per job,
        since Speechmatics' retries would only add copies of the same bytes."""
        target = self.unreadable / f"{check_job_id(job_id)}.body"
        incoming.finish()
        with contextlib.suppress(FileExistsError):
            os.link(incoming.name, target)
        return target

    def remove_leftovers(self, incoming_seconds: float = 3600, unreadable_seconds: float = 7 * 86400) -> int:
        """Delete the `.part` files a killed process left behind, and unreadable bodies kept for a week."""
        return (_remove_older(self.incoming, incoming_seconds)
                + _remove_older(self.unreadable, unreadable_seconds))


def _remove_older(directory: Path, seconds: float) -> int:
    cutoff = time.time() - seconds
    removed = 0
    for path in directory.glob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
