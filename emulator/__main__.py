"""``python -m emulator``: serve until SIGTERM or Ctrl-C, after printing the base URL on one line.

Every EmulatorOptions field is an option ``--field-name``, with the environment variable
``EMULATOR_FIELD_NAME`` as its default; the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from emulator.options import ENV_PREFIX, FIELDS, EmulatorOptions
from emulator.runtime import Emulator

LOG = logging.getLogger("emulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local emulator of the Speechmatics batch API (v2). Prints its base URL, serves until "
        "SIGTERM or Ctrl-C. Every option can also be set as the environment variable shown.",
    )
    for name, spec in FIELDS.items():
        env = ENV_PREFIX + name.upper()
        flag = "--" + name.replace("_", "-")
        help_text = f"{spec.metadata['help']} [env {env}]"
        if spec.type in {"bool", bool}:
            parser.add_argument(flag, dest=name, nargs="?", const="true", metavar="BOOL", help=help_text)
        else:
            default = None if spec.default is dataclasses.MISSING else spec.default
            if default not in (None, (), "") and not isinstance(default, bool):
                help_text += f" (default {_show(default)})"
            parser.add_argument(flag, dest=name, metavar=_metavar(name), help=help_text)
    return parser


def _show(value: Any) -> str:
    return ",".join(str(item) for item in value) if isinstance(value, tuple) else str(value)


def _metavar(name: str) -> str:
    special = {"notify_retry_delays": "LIST", "fetch_retry_delays": "LIST", "reject_data_names": "LIST",
               "fail_first_attempts": "N"}
    if name.endswith("_per_second"):
        return "N"
    return special.get(name, name.split("_")[-1].upper())


def options_from(args: argparse.Namespace, environ: dict[str, str]) -> EmulatorOptions:
    """Command line first, then EMULATOR_* variables, then the dataclass defaults."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        given = getattr(args, name)
        if given is None:
            given = environ.get(ENV_PREFIX + name.upper())
        if given is not None:
            values[name] = given
    if "api_key" not in values:
        raise ValueError(f"an API key is required: --api-key KEY or {ENV_PREFIX}API_KEY")
    return EmulatorOptions(**values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args, dict(os.environ))
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s emulator %(levelname)s %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    emulator = Emulator(options).start()
    try:
        print(emulator.url, flush=True)
        LOG.info("serving %s (seed %s); stop with SIGTERM or Ctrl-C", emulator.url, emulator.seed)
        while not stopping.wait(1.0):
            pass
    finally:
        emulator.stop()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
