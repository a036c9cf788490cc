"""Log lines as text (the default) or, with LOG_FORMAT=json, one JSON object per line for a log collector.

Structured fields ride on a record as `extra={"fields": {...}}`: the text format shows them through its
message as before, the JSON format as keys of their own, so a collector never parses a message. JSON lines are
ASCII: every other character is a `\\uXXXX` escape, so request input in a field can neither forge a line nor
end one for a reader that splits on Unicode line ends (NEL, U+2028); no secret or transcript text is ever put
in one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def printable(text: str) -> str:
    """`text` with every control or invisible character escaped the way repr does (`\\n`, `\\x1b`, `\\u202e`):
    input from a request can then neither start a forged log line nor drive a terminal. Backslashes are left
    alone, so escaping twice (here, then by EscapingFormatter) changes nothing more."""
    if text.isprintable():  # nearly always: checked in C, so a log line costs nothing extra
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


class EscapingFormatter(logging.Formatter):
    """Escapes whatever a message interpolates, whoever logs it: each record stays one line. (A traceback,
    appended after the message, keeps its own lines.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def json_wanted() -> bool:
    return os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields}`; an exception becomes one escaped string."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"logger": record.name, "pid": record.process, **(getattr(record, "fields", None) or {})}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_line(record.getMessage(), record.levelname.lower(), entry, record.created)


def json_line(message: str, level: str, fields: dict[str, Any], created: float | None = None) -> str:
    """`{"time", "level", "message", ...fields}`, in ASCII: every other character is escaped."""
    moment = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    return json.dumps({"time": moment.isoformat(timespec="milliseconds"), "level": level, "message": message,
                       **fields}, default=str)


def formatter() -> logging.Formatter:
    return JsonFormatter() if json_wanted() else EscapingFormatter(TEXT_FORMAT)


def gunicorn_logconfig(access: bool = False) -> dict[str, Any]:
    """gunicorn's logconfig_dict: its own lines and every other logger's through one stderr handler, in the
    format LOG_FORMAT names. (gunicorn replaces the top-level keys of its defaults with these.)"""
    style = ({"()": "notification_flow.logs.JsonFormatter"} if json_wanted()
             else {"()": "notification_flow.logs.EscapingFormatter", "fmt": TEXT_FORMAT})
    return {
        "version": 1, "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
                    # server.py logs one line of its own per notification: an access log only when asked for
                    "gunicorn.access": {"level": "INFO" if access else "WARNING", "handlers": [],
                                        "propagate": access},
                    "httpx": {"level": "WARNING"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}},
        "formatters": {"main": style},
    }


def emit(stream: Any = None, /, message: str = "", **fields: Any) -> None:
    """A line a script prints as its result (cronjob.py's summary): the text alone, or a JSON object."""
    print(json_line(message, "info", fields) if json_wanted() else message, file=stream or sys.stdout, flush=True)


def log_notification(log: logging.Logger, **fields: Any) -> None:
    """The server's one line per notification: text for people, every field its own key in JSON. The id and
    status come from an unauthenticated request, so the text escapes them: they can neither forge a log line
    nor reach a terminal as control codes."""
    log.info("notification job=%s status=%s outcome=%s code=%d stored=%s ms=%.1f", printable(str(fields["job_id"])),
             printable(str(fields["status"])), fields["outcome"], fields["code"], fields["stored"],
             fields["duration_seconds"] * 1000, extra={"fields": fields})


def error_line(message: str) -> str:
    """A script's one-line error before it exits: `error: ...`, or with LOG_FORMAT=json a JSON object, so a
    log collector reads every line a script writes."""
    return json_line(message, "error", {}) if json_wanted() else f"error: {message}"
