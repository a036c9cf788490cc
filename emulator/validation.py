"""Checks on a submitted job config; each failure becomes a 400 ``Job rejected`` with a clear detail.

Only what the documentation makes mandatory, or what would make the emulator misbehave later, is
checked: unknown keys are accepted and echoed back, as the service does.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

CONTENTS = frozenset(
    {"jobinfo", "transcript", "transcript.json-v2", "transcript.txt", "transcript.srt", "data", "text"}
)
MAX_NOTIFICATIONS = 3
DIARIZATION = frozenset({"none", "speaker", "channel"})


class ConfigError(ValueError):
    """The config is unusable; the message is the ``detail`` of the 400 answer."""


def parse_config(text: str | None) -> dict[str, Any]:
    """Decode and check the ``config`` form field."""
    if text is None:
        raise ConfigError("Missing config: the 'config' form field is required")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Job config JSON is invalid: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError("Job config JSON is invalid: expected an object")
    check_config(config)
    return config


def check_config(config: dict[str, Any]) -> None:
    if "type" not in config:
        raise ConfigError("config.type is required")
    if config["type"] != "transcription":
        raise ConfigError(f"config.type must be 'transcription', got {config['type']!r}")
    _check_transcription(config.get("transcription_config"))
    _check_fetch(config.get("fetch_data"))
    _check_object(config, "tracking")
    _check_object(config, "output_config")
    _check_notifications(config.get("notification_config"))


def _check_object(config: dict[str, Any], key: str) -> None:
    if key in config and not isinstance(config[key], dict):
        raise ConfigError(f"config.{key} must be an object")


def _check_transcription(transcription: Any) -> None:
    if not isinstance(transcription, dict):
        raise ConfigError("config.transcription_config is required for a transcription job")
    language = transcription.get("language")
    if not isinstance(language, str) or not language:
        raise ConfigError("config.transcription_config.language is required")
    diarization = transcription.get("diarization", "none")
    if diarization not in DIARIZATION:
        raise ConfigError("transcription_config.diarization must be one of none, speaker, channel")


def _check_fetch(fetch: Any) -> None:
    if fetch is None:
        return
    if not isinstance(fetch, dict) or not isinstance(fetch.get("url"), str):
        raise ConfigError("config.fetch_data.url is required when fetch_data is given")
    _check_url(fetch["url"], "fetch_data.url")
    _check_headers(fetch.get("auth_headers"), "fetch_data.auth_headers")


def _check_notifications(entries: Any) -> None:
    if entries is None:
        return
    if not isinstance(entries, list):
        raise ConfigError("config.notification_config must be a list")
    if len(entries) > MAX_NOTIFICATIONS:
        raise ConfigError(f"at most {MAX_NOTIFICATIONS} notification_config entries are allowed, got {len(entries)}")
    for index, entry in enumerate(entries):
        where = f"notification_config[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ConfigError(f"{where}.url is required")
        _check_url(entry["url"], f"{where}.url")
        _check_contents(entry.get("contents"), where)
        if str(entry.get("method", "post")).lower() not in {"post", "put"}:
            raise ConfigError(f"{where}.method must be 'post' or 'put', got {entry.get('method')!r}")
        _check_headers(entry.get("auth_headers"), f"{where}.auth_headers")


def _check_contents(contents: Any, where: str) -> None:
    if contents is None:
        return
    if not isinstance(contents, list):
        raise ConfigError(f"{where}.contents must be a list")
    unknown = [item for item in contents if item not in CONTENTS]
    if unknown:
        allowed = ", ".join(sorted(CONTENTS))
        raise ConfigError(f"{where}.contents has unknown value(s) {unknown!r}; allowed: {allowed}")


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{where} must be an http(s) URL, got {url!r}")


def _check_headers(headers: Any, where: str) -> None:
    if headers is None:
        return
    if not isinstance(headers, list) or not all(isinstance(line, str) and ":" in line for line in headers):
        raise ConfigError(f"{where} must be a list of 'Name: value' strings")
