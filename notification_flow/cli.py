"""What the three scripts do alike at their edges: logging, and turning bad settings into exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from notification_flow.db import StoreConfigError, StoreUnavailable
from notification_flow.logs import formatter
from notification_flow.settings import SettingsError

EXIT_BAD_SETTINGS = 2
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL: a later run may succeed


def setup_logging(level: int = logging.INFO) -> None:
    """Text lines, or JSON objects with LOG_FORMAT=json (notification_flow/logs.py)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """A missing or invalid setting ends the script with one line naming it, before anything is written."""
    try:
        yield
    except (SettingsError, StoreConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    except StoreUnavailable as error:  # locked or busy right now: worth trying again, not a bad setting
        print(f"error: the database is unavailable, try again: {error}", file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE) from None


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
