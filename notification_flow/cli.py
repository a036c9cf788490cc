"""What the three scripts do alike at their edges: logging, and turning bad settings into exit code 2."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from notification_flow.db import StoreConfigError
from notification_flow.settings import SettingsError

EXIT_BAD_SETTINGS = 2


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """A missing or invalid setting ends the script with one line naming it, before anything is written."""
    try:
        yield
    except (SettingsError, StoreConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None
