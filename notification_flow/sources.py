"""What client.py submits: audio files it uploads, or URLs that Speechmatics fetches itself (`fetch_data`), and
the --config-file checked whole before anything is written (`config_problem`).

A URL's query string (where presigned URLs carry their signature) and every `--url-header` value are secrets:
they travel in the job config and nowhere else. The row, every message and `--list` name the URL without its
query, fragment or password (redaction.py), and a reason Speechmatics gives for a failed fetch, which quotes
the URL whole, is redacted the same way before the job store records it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from notification_flow.cli import audio_problem, number_in
from notification_flow.redaction import redact_url

MAX_NOTIFICATION_URLS = 3  # per job, the API's limit; client.py adds one of its own
MAX_UPLOAD_BYTES = 1_000_000_000  # the API refuses uploads of 1 GB or more; fetch_data has no such limit


@dataclass(frozen=True)
class Source:
    """One job's audio: a local file to upload, or a URL (with its headers) for Speechmatics to fetch."""

    path: Path | None = None
    url: str | None = None
    headers: tuple[str, ...] = ()

    def __str__(self) -> str:
        """What the row records and every message names: never a secret."""
        return redact_url(self.url) if self.url else str(self.path)

    def problem(self) -> str | None:
        """Why this cannot be submitted, or None: checked before any row is recorded."""
        if self.path is None:
            return None
        if problem := audio_problem(self.path):
            return problem
        size = self.path.stat().st_size  # readable a moment ago, so it can be looked at
        if size >= MAX_UPLOAD_BYTES:
            return (f"{self.path}: {size} bytes, and Speechmatics takes uploads under 1 GB; not submitted: put it on "
                    "a web server or in object storage and submit it with --url")
        return None

    def add_to(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job config, with `fetch_data` for a URL (the config is the only place its secrets go)."""
        if self.url:
            job["fetch_data"] = {"url": self.url, **({"auth_headers": list(self.headers)} if self.headers else {})}
        return job


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """What to submit: files, URLs, or the sample as a check of the notification path."""
    parser.add_argument("--url", action="append", default=[], help="audio at this URL, fetched by Speechmatics "
                        "(repeatable; for files of 1 GB or more); its query string is never recorded")
    parser.add_argument("--urls-from", type=Path, metavar="FILE", help="audio URLs, one a line")
    parser.add_argument("--url-header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a header Speechmatics sends when it fetches each URL (repeatable); never recorded")
    parser.add_argument("--check", action="store_true", help="submit the sample and say in one line whether its "
                        "notification reached server.py and stored the transcript (exit 0 only then; check.py)")
    parser.add_argument("--check-timeout", type=number_in(float, 1), default=120, metavar="SECONDS",
                        help="with --check: how long to wait (default: 120)")


def sources_of(parser: argparse.ArgumentParser, args: argparse.Namespace, default: Path) -> list[Source]:
    """Every source the command line names (the default file if none); a bad URL or header is exit code 2."""
    urls = list(args.url)
    if args.urls_from is not None:
        try:
            lines = args.urls_from.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--urls-from {args.urls_from}: {error}")
        urls += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for header in args.url_header:
        name, colon, value = header.partition(":")
        if not colon or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name.strip()) or not value.strip():
            parser.error("--url-header must be 'Name: value'")  # never echo it: the value is a secret
    if args.url_header and not urls:
        parser.error("--url-header needs --url or --urls-from")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            parser.error(f"--url {redact_url(url)}: not an http(s) URL")
    headers = tuple(f"{name.strip()}: {value.strip()}" for name, _, value in
                    (header.partition(":") for header in args.url_header))
    sources = [Source(path=path) for path in args.audio] + [Source(url=url, headers=headers) for url in urls]
    return sources or [Source(path=default)]


def config_problem(config: dict[str, Any]) -> str | None:
    """Why a --config-file cannot take what client.py's job_config adds to it, or None: checked whole before any row is
    recorded, so a wrong shape is one line and exit 2, never a traceback after the intent was written."""
    for key in ("transcription_config", "tracking"):
        if key in config and not isinstance(config[key], dict):
            return f"{key} must be a JSON object"
    notifications = config.get("notification_config", [])
    if not isinstance(notifications, list) or not all(isinstance(item, dict) for item in notifications):
        return "notification_config must be a list of JSON objects"
    if len(notifications) >= MAX_NOTIFICATION_URLS:
        return (f"notification_config has {len(notifications)} entries; Speechmatics takes at most "
                f"{MAX_NOTIFICATION_URLS} and client.py adds its own")
    return None
