"""Every emulator option in one dataclass, shared by the CLI, the environment and in-process use.

One declaration per option (type, default, help text, whether it can change at runtime) keeps the
three ways of configuring the emulator from drifting apart: ``__main__`` builds its argparse options
and ``EMULATOR_<OPTION>`` environment variables from these fields, and ``PUT /_emulator/faults``
accepts exactly the fields marked as faults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "EMULATOR_"
ONE_GB = 1_000_000_000


def parse_bool(value: Any) -> bool:
    """Accept the usual spellings of a boolean from the CLI, the environment or JSON."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_fraction(value: Any) -> float:
    """A probability: fault fractions outside 0..1 are always a mistake, so refuse them early."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {number}")
    return number


def parse_non_negative(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def parse_count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not a whole number: {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


def parse_optional_int(value: Any) -> int | None:
    return None if value is None or str(value).strip() == "" else int(value)


def parse_optional_str(value: Any) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def _items(value: Any) -> list[Any]:
    """Lists arrive as JSON arrays (runtime control) or comma-separated text (CLI, environment)."""
    if isinstance(value, list | tuple):
        return list(value)
    return [item.strip() for item in str(value).split(",") if item.strip()]


def parse_delays(value: Any) -> tuple[float, ...]:
    return tuple(parse_non_negative(item) for item in _items(value))


def parse_globs(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in _items(value))


TRANSCRIPT_FORMATS = ("json-v2", "txt", "srt")


def parse_formats(value: Any) -> tuple[str, ...]:
    """Transcript formats by their ``format=`` names; a typo would silently disable a fault, so refuse it."""
    formats = tuple(str(item) for item in _items(value))
    unknown = sorted(set(formats) - set(TRANSCRIPT_FORMATS))
    if unknown:
        raise ValueError(f"unknown transcript format(s) {', '.join(unknown)}; known: {', '.join(TRANSCRIPT_FORMATS)}")
    return formats


def option(default: Any, parse: Callable[[Any], Any], help: str, *, fault: bool = False) -> Any:
    """Declare one option: its parser and help text travel with it to the CLI and the control API."""
    return field(default=default, metadata={"parse": parse, "help": help, "fault": fault})


@dataclass(frozen=True)
class EmulatorOptions:
    """The options of one emulator instance; emulator/README.md lists them in a table."""

    api_key: str = field(
        metadata={"parse": str, "help": "bearer token every request must carry (required)", "fault": False}
    )
    host: str = option("127.0.0.1", str, "interface to listen on")
    port: int = option(0, parse_count, "port to listen on; 0 picks a free port")
    processing_seconds: float = option(1.0, parse_non_negative, "time from submission until a job finishes")
    retention_seconds: float = option(
        7 * 86400.0, parse_non_negative, "time after creation when a job expires (410 afterwards)"
    )
    notify_retry_delays: tuple[float, ...] = option(
        (15.0, 20.0, 30.0), parse_delays, "comma-separated delays between notification attempts (s)"
    )
    notify_timeout: float = option(10.0, parse_non_negative, "timeout of one notification attempt (s)")
    fetch_timeout: float = option(30.0, parse_non_negative, "timeout of a fetch_data download (s)")
    fetch_retry_delays: tuple[float, ...] = option(
        (0.1, 0.3, 0.6), parse_delays, "comma-separated delays between fetch_data download attempts (s)"
    )
    max_upload_bytes: int = option(ONE_GB - 1, parse_count, "largest accepted media file (bytes)")
    upload_dir: str | None = option(None, parse_optional_str, "parent directory for the upload temp dir")
    default_wait_seconds: float = option(
        2.0, parse_non_negative, "server-side wait when a GET has no ?wait= (the service waits about 2 s)"
    )
    max_wait_seconds: float = option(30.0, parse_non_negative, "cap on any ?wait= value (s)")
    seed: int | None = option(None, parse_optional_int, "seed of every random choice; random if unset")
    log_requests: bool = option(False, parse_bool, "log every HTTP request to stderr")
    drop_fraction: float = option(0.0, parse_fraction, "fraction of notifications never sent", fault=True)
    duplicate_fraction: float = option(
        0.0, parse_fraction, "fraction of notifications sent twice", fault=True
    )
    delay_max_seconds: float = option(
        0.0, parse_non_negative, "delay each notification by random 0..N s (reorders them)", fault=True
    )
    fail_first_attempts: int = option(
        0, parse_count, "fail the first N attempts of every notification without sending", fault=True
    )
    api_429_fraction: float = option(0.0, parse_fraction, "fraction of API calls answered 429", fault=True)
    api_503_fraction: float = option(0.0, parse_fraction, "fraction of API calls answered 503", fault=True)
    api_500_fraction: float = option(0.0, parse_fraction, "fraction of API calls answered 500", fault=True)
    api_fault_routes: tuple[str, ...] = option(
        (), parse_globs, "comma-separated 'METHOD /v2/route' globs the 429/503/500 faults apply to; none = all",
        fault=True,
    )
    retry_after_seconds: int = option(1, parse_count, "Retry-After value of a 429 (s)", fault=True)
    omit_retry_after: bool = option(False, parse_bool, "send 429s without Retry-After", fault=True)
    api_latency_ms: int = option(0, parse_count, "added latency of every API answer (ms)", fault=True)
    create_latency_ms: int = option(
        0, parse_count, "added latency of POST /v2/jobs after the upload is read, before the job exists (ms)",
        fault=True,
    )
    create_then_fail_fraction: float = option(
        0.0, parse_fraction, "fraction of POST /v2/jobs that create the job but answer 503", fault=True
    )
    truncate_transcript_fraction: float = option(
        0.0, parse_fraction, "fraction of transcript downloads served truncated (status 200)", fault=True
    )
    empty_transcript_fraction: float = option(
        0.0, parse_fraction, "fraction of transcript downloads served with an empty body (status 200)", fault=True
    )
    transcript_fault_formats: tuple[str, ...] = option(
        TRANSCRIPT_FORMATS, parse_formats, "comma-separated formats the two transcript faults apply to",
        fault=True,
    )
    addon_error_fraction: float = option(
        0.0, parse_fraction, "fraction of done jobs whose requested add-ons fail (metadata.*_errors)", fault=True
    )
    reject_fraction: float = option(0.0, parse_fraction, "fraction of jobs that end rejected", fault=True)
    reject_data_names: tuple[str, ...] = option(
        (), parse_globs, "comma-separated data_name globs of jobs that end rejected", fault=True
    )
    rate_limit_post_per_second: int = option(
        10, parse_count, "POST /v2/jobs allowed per 1 s window; 0 = off", fault=True
    )
    rate_limit_get_per_second: int = option(
        50, parse_count, "GET requests allowed per 1 s window; 0 = off", fault=True
    )
    hold_notifications: bool = option(
        False, parse_bool, "queue notifications instead of sending them", fault=True
    )

    def __post_init__(self) -> None:
        """Normalise and check every field, whichever way it arrived (Python, CLI text, JSON)."""
        if not self.api_key:
            raise ValueError("api_key is required")
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None or spec.default is not None:
                object.__setattr__(self, spec.name, _parse_field(spec, value))

    def faults(self) -> dict[str, Any]:
        """The runtime-changeable part, as JSON-ready values."""
        return {name: _jsonable(getattr(self, name)) for name in FAULT_FIELDS}

    def with_faults(self, changes: Mapping[str, Any]) -> EmulatorOptions:
        """A copy with some fault options changed; unknown names are refused, not ignored."""
        unknown = sorted(set(changes) - set(FAULT_FIELDS))
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


def _parse_field(spec: dataclasses.Field, value: Any) -> Any:
    try:
        return spec.metadata["parse"](value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{spec.name}: {exc}") from None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


FIELDS: dict[str, dataclasses.Field] = {spec.name: spec for spec in dataclasses.fields(EmulatorOptions)}
FAULT_FIELDS: tuple[str, ...] = tuple(name for name, spec in FIELDS.items() if spec.metadata["fault"])
