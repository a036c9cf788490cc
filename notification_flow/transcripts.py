"""Transcript storage: `<job_id>.json` files in TRANSCRIPTS_DIR, written so that a reader never sees half a file.

Every transcript is first streamed into `.incoming/`, fsynced, then *hard-linked* to its final name. A link,
unlike a rename, refuses to replace an existing file: of two concurrent deliveries of the same transcript,
exactly one writes it, and a crash at any point leaves either no `<job_id>.json` or a complete one. Where the
filesystem can (Linux's O_TMPFILE), the file in `.incoming/` has no name at all until it is linked: a killed
process leaves nothing behind, and nothing is unlinked after a body is stored. The
directory may be a shared mount (NFS supports hard links) when several servers run. With TRANSCRIPTS_URL set,
transcripts are objects in S3-compatible storage instead (notification_flow/objects.py, the same interface);
`open_transcripts` picks one, so the scripts never choose.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from notification_flow import jsonv2

if TYPE_CHECKING:
    from notification_flow.settings import Settings

# Speechmatics job ids are 10 lowercase letters and digits today; a little slack in length, none in the
# alphabet: nothing that passes this can name another directory.
JOB_ID_PATTERN = re.compile(r"[a-z0-9]{8,32}")


class InvalidJobId(ValueError):
    """The id cannot be a Speechmatics job id, so it must never become part of a path."""


def check_job_id(job_id: str | None) -> str:
    if not job_id or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidJobId("job id must be 8 to 32 lowercase letters and digits")
    return job_id


class IncomingFile:
    """A temporary file in `.incoming/` that counts what is written and refuses to grow past a limit: unnamed
    (`name` None) where the filesystem allows, else a `.part` file."""

    def __init__(self, directory: Path, limit: int | None = None, unnamed: bool = False) -> None:
        self.name: str | None
        if unnamed:
            handle, self.name = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600), None
        else:
            handle, self.name = tempfile.mkstemp(dir=directory, suffix=".part")  # a str: no Path built per body
        self.file: BinaryIO = os.fdopen(handle, "w+b")
        self.size = 0
        self.limit = limit
        self.durable = False
        self.checked_for: str | None = None  # the job whose complete json-v2 transcript this was found to be

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise BodyTooLarge(self.limit)
        self.file.write(chunk)

    def restart(self) -> None:
        """Empty the file for another try at the same download."""
        self.file.seek(0)
        self.file.truncate()
        self.size = 0
        self.durable = False
        self.checked_for = None

    def copy_from(self, source: BinaryIO, chunk_size: int = 1 << 16) -> IncomingFile:
        while chunk := source.read(chunk_size):
            self.write(chunk)
        return self

    def finish(self) -> None:
        """Make the bytes durable before anyone can link to them (once, however often it is asked)."""
        if not self.durable:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.durable = True

    def reader(self) -> BinaryIO:
        """The written bytes from the start, through the same handle: no second open of the file."""
        self.finish()
        self.file.seek(0)
        return self.file

    def discard(self) -> None:
        self.file.close()  # an unnamed file is gone with its last descriptor
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name)


class NotATranscript(ValueError):
    """Not a complete json-v2 transcript of the job it would be published as: never published."""


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class DirectorySync:
    """The fsync that makes new entries of one directory durable, shared by the threads that changed it
    meanwhile (a group commit): a change is durable once an fsync that began after it has returned. One
    thread at a time syncs; the threads that arrive meanwhile wait for it to end, and if it began before
    their change, one of them syncs for all of them. The directory is opened once per process (opening it
    costs as much as the fsync), never across a fork."""

    def __init__(self, directory: Path) -> None:
        self.directory = ProcessDescriptor(directory)
        self.changes = 0  # changes made so far, numbered in order
        self.synced = 0  # every change up to this number is durable
        self.syncing = False  # a thread is in fsync now
        self.state = threading.Condition()  # guards the three above; notified when an fsync ends

    def after_change(self) -> None:
        """Return once the change the caller has just made to the directory is durable (OSError if not)."""
        with self.state:
            self.changes += 1
            mine = self.changes
            while self.synced < mine:
                if self.syncing:
                    self.state.wait()  # it may have begun before this change: look again when it ends
                    continue
                self.syncing, covered = True, self.changes  # every change numbered so far is already made
                try:
                    self.state.release()
                    try:
                        os.fsync(self.directory.descriptor())
                    finally:
                        self.state.acquire()
                    self.synced = max(self.synced, covered)
                finally:  # a failed fsync fails this caller; a waiting one syncs again
                    self.syncing = False
                    self.state.notify_all()


class ProcessDescriptor:
    """A directory opened once per process and kept open: never used across a fork, where it would be the
    parent's (for /proc/self/fd, the parent's open files)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._opened: tuple[int, int] | None = None  # (pid, descriptor)
        self._lock = threading.Lock()

    def descriptor(self) -> int:
        opened = self._opened
        if opened is None or opened[0] != os.getpid():
            with self._lock:
                if self._opened is None or self._opened[0] != os.getpid():
                    self._opened = (os.getpid(), os.open(self.path, os.O_RDONLY))
                opened = self._opened
        return opened[1]


# How an unnamed file is linked to a name: one descriptor of /proc/self/fd per process, whatever uses it.
_OPEN_FILES = ProcessDescriptor("/proc/self/fd")


def _link_unnamed(handle: int, target: str | Path) -> None:
    """Give the open file `handle` the name `target`, through its entry in /proc/self/fd (linkat with
    AT_SYMLINK_FOLLOW: the way to name an O_TMPFILE file without privileges)."""
    os.link(str(handle), target, src_dir_fd=_OPEN_FILES.descriptor(), follow_symlinks=True)


class TranscriptFiles:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).resolve()
        self.incoming = self.directory / ".incoming"
        self._directory_sync = DirectorySync(self.directory)
        self._unnamed: bool | None = None  # whether `.incoming` takes unnamed files: found out on first use
        self.unreadable = self.directory / ".unreadable"
        self._prefix = f"{self.directory}{os.sep}"  # exists() joins names as strings: pathlib costs 10 µs a name

    def ensure_directories(self) -> TranscriptFiles:
        for path in (self.directory, self.incoming, self.unreadable):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def path_for(self, job_id: str) -> Path:
        """The pattern admits only letters and digits, so the name cannot leave the (resolved) directory."""
        return self.directory / f"{check_job_id(job_id)}.json"

    def location(self, job_id: str) -> str:
        """Where the job's transcript is, as recorded on its row and shown by `--list` (InvalidJobId if the id
        cannot be a job's)."""
        return f"{self._prefix}{check_job_id(job_id)}.json"

    def check_ready(self) -> None:
        """For /readyz: OSError unless a transcript could be published now. The probe does what publishing
        does, a file in `.incoming` linked into the directory, so that the two fail together."""
        with tempfile.NamedTemporaryFile(dir=self.incoming, prefix="ready-", suffix=".part") as probe:
            probe.write(b"ready")
            probe.flush()
            linked = self.directory / f".ready-{os.getpid()}-{threading.get_ident()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(linked)  # left by a probe killed between its link and unlink
            os.link(probe.name, linked)
            os.unlink(linked)

    def exists(self, job_id: str) -> bool:
        """A file, and not an empty one (no transcript is empty). One stat: the repair sweep asks this of
        tens of thousands of jobs a pass."""
        try:
            found = os.stat(f"{self._prefix}{check_job_id(job_id)}.json")
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(found.st_mode) and found.st_size > 0

    @contextlib.contextmanager
    def incoming_file(self, limit: int | None = None) -> Iterator[IncomingFile]:
        """A temporary file that is always removed, whether or not it was stored."""
        if self._unnamed is None:
            self._unnamed = self._unnamed_files_work()
        incoming = IncomingFile(self.incoming, limit, unnamed=self._unnamed)
        try:
            yield incoming
        finally:
            incoming.discard()

    def _unnamed_files_work(self) -> bool:
        """Whether an unnamed file can be made in `.incoming` and linked to a name: not on NFS, nor where
        /proc is not mounted, nor off Linux. Those keep named `.part` files, which work everywhere."""
        try:
            handle = os.open(self.incoming, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (AttributeError, OSError):  # AttributeError: no os.O_TMPFILE here
            return False
        probe = f"{self.incoming}{os.sep}.probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            _link_unnamed(handle, probe)
            os.unlink(probe)
            return True
        except OSError:
            return False
        finally:
            os.close(handle)

    def _link(self, incoming: IncomingFile, target: str | Path) -> None:
        """Give the file's durable bytes the name `target` (FileExistsError if that is taken)."""
        incoming.finish()
        if incoming.name is None:
            _link_unnamed(incoming.file.fileno(), target)
        else:
            os.link(incoming.name, target)

    def publish(self, job_id: str, incoming: IncomingFile) -> bool:
        """Publish the transcript as `<job_id>.json` unless it is already there; True if this call wrote it.

        Only a file checked to be this job's complete transcript may be published. A file already there
        that is not one (left by an older version, or damaged) is replaced, atomically; a valid one is kept."""
        if incoming.checked_for != job_id:
            raise NotATranscript(f"the transcript of {job_id} was not checked before publishing")
        final = self.location(job_id)
        try:
            self._link(incoming, final)
            written = True
        except FileExistsError:
            written = not self.is_valid(job_id, expected_size=incoming.size)
            if written:
                replacement = self.incoming / f"{job_id}.{os.getpid()}.{time.monotonic_ns()}.replace"
                self._link(incoming, replacement)
                os.replace(replacement, final)
        self._directory_sync.after_change()  # a new entry is durable only once its directory is fsynced
        return written

    def is_valid(self, job_id: str, expected_size: int | None = None) -> bool:
        """Whether `<job_id>.json` holds this job's complete transcript (a file of the size expected is
        taken to be the same transcript, without reading it)."""
        path = self.path_for(job_id)
        try:
            size = path.stat().st_size
            if not path.is_file() or size == 0:
                return False
            if size == expected_size:
                return True
            with path.open("rb") as source:
                return jsonv2.is_transcript_of(source, size, job_id)
        except FileNotFoundError:
            return False

    def keep_unreadable(self, job_id: str, incoming: IncomingFile) -> Path:
        """Keep a body we could not understand, so that an operator can see what was sent: one per job,
        since Speechmatics' retries would only add copies of the same bytes."""
        target = self.unreadable / f"{check_job_id(job_id)}.body"
        with contextlib.suppress(FileExistsError):
            self._link(incoming, target)
        return target

    def remove_leftovers(self, incoming_seconds: float = 3600, unreadable_seconds: float = 7 * 86400) -> int:
        """Delete temporary files a killed process left behind, and unreadable bodies kept for a week."""
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


class TranscriptStore(Protocol):
    """What the server, the cronjob and the reconciler use: TranscriptFiles or objects.TranscriptObjects."""

    incoming: Path  # the local spool directory bodies are received into

    def location(self, job_id: str) -> str: ...
    def incoming_file(self, limit: int | None = None) -> contextlib.AbstractContextManager[IncomingFile]: ...
    def publish(self, job_id: str, incoming: IncomingFile) -> bool: ...
    def exists(self, job_id: str) -> bool: ...
    def is_valid(self, job_id: str, expected_size: int | None = None) -> bool: ...
    def keep_unreadable(self, job_id: str, incoming: IncomingFile) -> Path: ...
    def remove_leftovers(self, incoming_seconds: float = 3600, unreadable_seconds: float = 7 * 86400) -> int: ...
    def check_ready(self) -> None: ...
    def ensure_directories(self) -> TranscriptStore: ...


def open_transcripts(settings: Settings, check: bool = False) -> TranscriptStore:
    """The transcript store the settings choose: objects under TRANSCRIPTS_URL (TRANSCRIPTS_DIR then only
    spools bodies being received), else files in TRANSCRIPTS_DIR. Its local directories are made by
    `ensure_directories`, not here. `check`: at start-up, refuse a store that cannot work (a SettingsError,
    exit 2) before any worker starts, writing nothing locally."""
    if not settings.transcripts_url:
        return TranscriptFiles(settings.transcripts_dir)
    from notification_flow.objects import TranscriptObjects  # boto3 only for those who use it

    objects = TranscriptObjects(settings.transcripts_url, settings.transcripts_dir)
    if check:
        return objects.check()
    objects.client  # noqa: B018 - boto3 imported and its client made now, not by the first notification
    return objects
