"""What the three scripts do alike at their edges: logging, and turning bad settings into exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from notification_flow.db import StoreConfigError, StoreUnavailable
from notification_flow.logs import error_line, formatter
from notification_flow.objects import StorageUnavailable
from notification_flow.settings import SettingsError

EXIT_BAD_SETTINGS = 2
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL: a later run may succeed


def setup_logging(level: int = logging.INFO) -> None:
    """Text lines, or JSON objects with LOG_FORMAT=json (notification_flow/logs.py)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO says where credentials came from


@contextlib.contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """A missing or invalid setting ends the script with one line naming it (exit 2), before anything is
    written; a database or transcript storage that is unavailable now, with one line too (exit 75)."""
    try:
        yield
    except (SettingsError, StoreConfigError) as error:
        for message in getattr(error, "messages", [str(error)]):  # every bad setting at once, one line each
            print(error_line(message), file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    except (StoreUnavailable, StorageUnavailable) as error:  # down, busy or failing now: not a bad setting
        what = "the database" if isinstance(error, StoreUnavailable) else "transcript storage"
        print(error_line(f"{what} is unavailable, try again: {error}"), file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE) from None


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line input is one line (`error: ...`) and exit code 2: no usage dump, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_SETTINGS, error_line(f"{message} (see --help)") + "\n")


def number_in(kind: type[int] | type[float], low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse `type` for a number from `low` to `high` (inclusive): out of range is exit code 2, one line."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (low <= value and (high is None or value <= high)):  # also refuses nan
            span = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    return parse


def audio_problem(path: Path) -> str | None:
    """Why `path` cannot be submitted (unreadable, not a file, empty), or None. Checked before the row is
    recorded: an empty file would only be billed and rejected."""
    try:
        with path.open("rb") as audio:
            if not audio.read(1):
                return f"{path}: the file is empty; not submitted"
    except OSError as error:
        return f"{path}: cannot read: {error.strerror or error}"
    return None


def read_json_object(parser: argparse.ArgumentParser, flag: str, path: Path | None) -> dict[str, Any]:
    """The JSON object in the file a flag names ({} without one); a bad file is the flag's error (exit 2)."""
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        parser.error(f"{flag} {path}: {error}")
    if not isinstance(value, dict):
        parser.error(f"{flag} {path}: must hold a JSON object")
    return value
