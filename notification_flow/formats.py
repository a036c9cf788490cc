"""Subtitles (SRT) and plain text beside the json-v2 transcript: `<job_id>.srt` and `<job_id>.txt`.

json-v2 stays the canonical record (`done` means it is stored); a job submitted with `client.py --format srt,txt`
records on its row which further formats it has, and asks for them in its notification's `contents` (one
multipart notification). The server keeps each part it is sent; cronjob.py fetches any that is missing, when it
recovers a job and in the repair sweep. Each file is checked for being what it claims before it is published
(UTF-8 text; for SRT, well-formed cues), and against the json-v2 already stored: every word of the transcript,
in order, must be in it, so a download cut short, even at a cue boundary, is never kept. Like the json-v2, each
is written once and never over a valid one, by the transcript store's `put_once`: a file in TRANSCRIPTS_DIR is
linked into place; with TRANSCRIPTS_URL, `PREFIX/<job_id>.srt` and `.txt` are conditional PutObjects. Transcript
text never reaches a log line: a problem names word numbers, not words.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from typing import TYPE_CHECKING, Any, BinaryIO

import ijson

from notification_flow.api import ApiError
from notification_flow.spool import IncomingFile
from notification_flow.transcripts import TranscriptStore

if TYPE_CHECKING:
    from flask import Request

    from notification_flow.api import SpeechmaticsAPI
    from notification_flow.jobs import JobStore

FORMATS = ("srt", "txt")
CONTENT_TYPES = {"srt": "application/x-subrip; charset=utf-8", "txt": "text/plain; charset=utf-8"}
SRT_TIMES = re.compile(r"\d{2,}:\d{2}:\d{2},\d{3} --> \d{2,}:\d{2}:\d{2},\d{3}")
log = logging.getLogger("formats")


class NotWhatItClaims(ValueError):
    """An srt or txt that is not well formed, or not the text of the stored json-v2: never published."""


# -- client.py: asking for them ---------------------------------------------------------------------------
def parse_formats(text: str) -> str:
    """`--format srt,txt`: the formats, checked and in a fixed order, as the row records them."""
    asked = {item.strip() for item in text.split(",") if item.strip()} - {"json-v2", "json"}
    unknown = sorted(asked - set(FORMATS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    return ",".join(fmt for fmt in FORMATS if fmt in asked)


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", dest="formats", type=parse_formats, default="", metavar="srt,txt",
                        help="store these beside the json-v2 transcript (default: none); SRT options go in "
                        "--config-file's output_config.srt_overrides")


def listed(formats: str | None) -> list[str]:
    """A row's `formats`, "srt,txt" (or NULL), as a list."""
    return [fmt for fmt in (formats or "").split(",") if fmt]


def with_formats(job: dict[str, Any], formats: str) -> dict[str, Any]:
    """The job config whose own (last) notification also carries each format, as one multipart body."""
    if formats:
        job["notification_config"][-1]["contents"] += [f"transcript.{fmt}" for fmt in formats.split(",")]
    return job


# -- checking -------------------------------------------------------------------------------------------
def words_of(transcript: BinaryIO) -> list[str]:
    """The words of a json-v2 transcript, in order."""
    return [str(item["alternatives"][0]["content"]) for item in ijson.items(transcript, "results.item")
            if item.get("type") == "word" and item.get("alternatives")]


def check(fmt: str, data: bytes, words: list[str]) -> None:
    """Raise NotWhatItClaims unless `data` is a well-formed `fmt` file holding every word of the json-v2."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotWhatItClaims(f"the {fmt} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    if "\x00" in text:
        raise NotWhatItClaims(f"the {fmt} is not text: it holds NUL bytes")
    body = srt_text(text) if fmt == "srt" else text
    position = 0
    for number, word in enumerate(words, start=1):
        found = body.find(word, position)
        if found < 0:
            raise NotWhatItClaims(f"the {fmt} lacks word {number} of the {len(words)} in the json-v2 (cut short?)")
        position = found + len(word)


def srt_text(text: str) -> str:
    """The text of the cues; NotWhatItClaims unless each is a number, a time range and at least one line."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip())
    lines: list[str] = []
    for number, block in enumerate(block for block in blocks if block.strip()):
        cue = block.split("\n")
        if len(cue) < 3 or not cue[0].strip().isdigit() or not SRT_TIMES.fullmatch(cue[1].strip()):
            raise NotWhatItClaims(f"the srt's cue {number + 1} is not a well-formed SubRip cue")
        lines += cue[2:]
    return "\n".join(lines)


# -- storing ------------------------------------------------------------------------------------------
def holds(fmt: str, data: bytes, words: list[str]) -> bool:
    """Whether `data` is a `fmt` that is what it claims: a stored one that is stays (written once), else is replaced."""
    try:
        check(fmt, data, words)
    except NotWhatItClaims:
        return False
    return True


class Formats:
    """The srt and txt of the jobs in one transcript store, files or objects, and which ones each job should have."""

    def __init__(self, transcripts: TranscriptStore, store: JobStore | None = None) -> None:
        """`store` for what each job should have (cronjob.py); the server only keeps what it is sent."""
        self.store, self.transcripts = store, transcripts

    def wanted(self, job_id: str) -> list[str]:
        """The formats the job's row records."""
        if self.store is None:
            return []
        with self.store.database.transaction(write=False) as tx:
            rows = tx.execute("SELECT formats FROM jobs WHERE job_id = $1", job_id)
        return listed(rows[0]["formats"]) if rows else []

    def missing(self, job_id: str, wanted: list[str] | None = None) -> list[str]:
        """The formats the job should have (`wanted`, when the caller has read its row) that are not stored: one
        stat or HEAD each (the repair sweep asks this daily)."""
        return [fmt for fmt in (self.wanted(job_id) if wanted is None else wanted)
                if not self.transcripts.stored(self.transcripts.key_for(job_id, fmt))]

    def words(self, job_id: str) -> list[str]:
        """The words of the stored json-v2, which each format must hold."""
        words = self.transcripts.read(self.transcripts.key_for(job_id), words_of)
        if words is None:
            raise FileNotFoundError(f"the json-v2 of {job_id} is not stored")
        return words

    def publish(self, job_id: str, fmt: str, incoming: IncomingFile, words: list[str]) -> bool:
        """Check the file against the json-v2's words and store it unless a valid one is there; True if this call
        wrote it. NotWhatItClaims if it is not what it claims to be."""
        check(fmt, incoming.reader().read(), words)
        return self.transcripts.put_once(self.transcripts.key_for(job_id, fmt), incoming,
                                         lambda body: holds(fmt, body.read(), words), CONTENT_TYPES[fmt])

    def keep_notified(self, job_id: str, request: Request, transcript: IncomingFile) -> list[str]:
        """Keep each srt or txt part of a notification whose json-v2 (`transcript`, checked) is stored; one that
        is not what it claims, or that storage cannot take now, is left for cronjob.py: the json-v2 is stored,
        and the notification answered 200 for it. The formats written."""
        written: list[str] = []
        words: list[str] | None = None
        parts = request.files.items() if request.mimetype == "multipart/form-data" else ()
        for name, part in parts:
            fmt = name.removeprefix("transcript.")
            if name not in (f"transcript.{fmt}" for fmt in FORMATS):
                continue
            words = words_of(transcript.reader()) if words is None else words
            with self.transcripts.incoming_file() as incoming:
                shutil.copyfileobj(part.stream, incoming)
                try:
                    if self.publish(job_id, fmt, incoming, words):
                        written.append(fmt)
                except (NotWhatItClaims, OSError) as error:
                    log.warning("job %s: the %s is not kept, cronjob.py fetches it: %s", job_id, fmt, error)
        return written

    def fetch_missing(self, api: SpeechmaticsAPI, job_id: str) -> list[str]:
        """Download and publish each format the job lacks; the formats written. An ApiError or NotWhatItClaims
        is raised after every format was tried, so the job is tried again by the next pass."""
        written, problem = [], None
        missing = self.missing(job_id)
        words = self.words(job_id) if missing else []
        for fmt in missing:
            with self.transcripts.incoming_file() as incoming:
                try:
                    api.download_transcript(job_id, incoming, fmt)
                    if self.publish(job_id, fmt, incoming, words):
                        written.append(fmt)
                        log.info("stored %s.%s", job_id, fmt)
                except (ApiError, NotWhatItClaims, OSError) as error:
                    problem = problem or error
        if problem is not None:
            raise problem
        return written
