"""Transcript storage: `<job_id>.json` files in TRANSCRIPTS_DIR, written so that a reader never sees half a file.

Every transcript is first written to a `.part` file in `.incoming/` (notification_flow/spool.py), checked,
fsynced, then *hard-linked* to its final name, and the directory fsynced. A link, unlike a rename, refuses to
replace an existing file: of two concurrent deliveries of the same transcript exactly one writes it, and a
crash at any point leaves either no `<job_id>.json` or a complete one. The directory may be a shared mount
(NFS supports hard links) when several servers run. With TRANSCRIPTS_URL set, transcripts are objects in
S3-compatible storage instead (notification_flow/objects.py, the same interface); `open_transcripts` picks
one, so the scripts never choose.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from notification_flow import jsonv2
from notification_flow.objects import TranscriptObjects  # boto3 is imported only when it is used
from notification_flow.spool import BodyTooLarge, IncomingFile, InvalidJobId, NotATranscript, Spool, check_job_id

if TYPE_CHECKING:
    from notification_flow.settings import Settings

# The store's interface, with the errors its users catch (made in spool.py, which objects.py shares).
__all__ = ["BodyTooLarge", "IncomingFile", "InvalidJobId", "NotATranscript", "TranscriptFiles", "TranscriptStore",
           "open_transcripts"]

log = logging.getLogger("storage")
T = TypeVar("T")


_ENDS = 64  # bytes read at each end of a file by `exists`


class TranscriptFiles(Spool):
    """`<job_id>.json` files in the spool's own directory, TRANSCRIPTS_DIR, and the srt and txt beside them
    (formats.py): the same interface as TranscriptObjects, where a key is a file's path."""

    def path_for(self, job_id: str, fmt: str = "json") -> Path:
        """The pattern admits only letters and digits, so the name cannot leave the (resolved) directory."""
        return self.directory / f"{check_job_id(job_id)}.{fmt}"

    def key_for(self, job_id: str, fmt: str = "json") -> str:
        return str(self.path_for(job_id, fmt))

    def location(self, job_id: str) -> str:
        """Where the job's transcript is, as recorded on its row and shown by `--list` (InvalidJobId if the id
        cannot be a job's)."""
        return self.key_for(job_id)

    def exists(self, job_id: str) -> bool:
        """A regular file that begins with `{` and ends with `}`: the repair sweep asks this of every file once
        a day, so it reads only the two ends, with as few system calls as it takes. A missing, empty, cut-off or
        zeroed file fails it; publishing reads the whole file before it keeps one."""
        return bool(self.read(self.location(job_id), _braced_at_both_ends))

    def stored(self, key: str) -> bool:
        """Whether a regular file is there (one stat)."""
        try:
            return stat.S_ISREG(os.stat(key).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def read(self, key: str, judge: Callable[[BinaryIO], T]) -> T | None:
        """`judge` of the file, read from its start; None unless a regular file is there."""
        try:
            handle = _open_regular(key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if handle is None:
            return None
        with os.fdopen(handle, "rb") as file:
            return judge(file)

    def publish(self, job_id: str, incoming: IncomingFile) -> bool:
        """Publish the transcript as `<job_id>.json` unless it is already there; True if this call wrote it. Only
        a file checked to be this job's complete transcript may be published."""
        if incoming.checked_for != job_id:
            raise NotATranscript(f"the transcript of {job_id} was not checked before publishing")
        return self.put_once(self.location(job_id), incoming, lambda file: jsonv2.is_transcript_of(file, job_id))

    def put_once(self, key: str, incoming: IncomingFile, valid: Callable[[BinaryIO], bool],
                 content_type: str = "application/json") -> bool:
        """Link the spool file to `key` (the json-v2; formats.py's srt and txt) unless a file is there; True if
        this call wrote it. A file already there that `valid` refuses (damaged, or left by an older version) is
        replaced, atomically, by the checked file itself; one it accepts is kept. (`content_type` is for
        objects.)"""
        incoming.finish()
        try:
            os.link(incoming.name, key)
            written = True
        except FileExistsError:
            written = not self.read(key, valid)
            if written:
                os.replace(incoming.name, key)
                log.warning("%s: replaced a stored file that was not what it claims", key)
        _sync_directory(self.directory)  # a new entry is durable only once its directory is fsynced
        return written

    def delete(self, key: str) -> bool:
        """Remove the file; False if there was none."""
        try:
            os.unlink(key)
        except FileNotFoundError:
            return False
        return True


def _braced_at_both_ends(file: BinaryIO) -> bool:
    """Whether the file begins with `{` and ends with `}`, whitespace aside: one fstat and a pread at each end."""
    handle = file.fileno()
    size = os.fstat(handle).st_size
    return (os.pread(handle, _ENDS, 0).lstrip().startswith(b"{")
            and os.pread(handle, _ENDS, max(0, size - _ENDS)).rstrip().endswith(b"}"))


def _open_regular(path: str) -> int | None:
    """A read-only descriptor of the regular file at `path`, or None if something else is there. O_NONBLOCK: a
    FIFO left at the name must not make us wait for a writer."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if stat.S_ISREG(os.fstat(handle).st_mode):
        return handle
    os.close(handle)
    return None


def _sync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# What the server, the cronjob and the reconciler use: both stores receive through the same spool.
TranscriptStore = TranscriptFiles | TranscriptObjects


def open_transcripts(settings: Settings, check: bool = False) -> TranscriptStore:
    """The transcript store the settings choose: objects under TRANSCRIPTS_URL (TRANSCRIPTS_DIR then only
    spools bodies being received), else files in TRANSCRIPTS_DIR. Its local directories are made by
    `ensure_directories`, not here. `check`: at start-up, refuse a store that cannot work (a SettingsError,
    exit 2) before any worker starts, writing nothing locally."""
    if not settings.transcripts_url:
        return TranscriptFiles(settings.transcripts_dir, settings.transcripts_mode)
    objects = TranscriptObjects(settings.transcripts_url, settings.transcripts_dir)
    if check:
        return objects.check()
    objects.client  # noqa: B018 - boto3 imported and its client made now, not by the first notification
    return objects
