"""Configuration for all three scripts, from environment variables with command-line overrides.

One table of settings (``SETTINGS``) drives the environment lookup, the command-line flags, the README's
configuration table and the validation, so the four can never disagree. Every bad or missing value is
reported in one run, one line each naming its variable, before any script has written anything: a new user
fixes them all at once instead of one per run.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import re
import shlex
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PRODUCTION_BATCH_URL = "https://asr.api.speechmatics.com/v2"

# Speechmatics' published notification egress addresses, by region (docs: batch/notifications).
EGRESS_IPS: dict[str, tuple[str, ...]] = {
    "eu1": ("40.74.41.91", "52.236.157.154", "40.74.37.0", "20.73.209.153", "20.73.142.44"),
    "eu2": ("20.105.89.153", "20.105.89.173", "20.105.89.184", "20.105.89.98", "20.105.88.228"),
    "us1": ("52.149.21.32", "52.149.21.10", "52.137.102.83", "40.64.107.92", "40.64.107.99"),
    "us2": ("52.146.58.224", "52.146.58.159", "52.146.59.242", "52.146.59.213", "52.146.58.64"),
    "au1": ("20.248.249.20", "20.248.249.47", "20.248.249.181", "20.248.249.119", "20.248.249.164"),
}

SECRET_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


class SettingsError(Exception):
    """Settings are missing or invalid: one message per setting, each naming its environment variable."""

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _secret(name: str, value: str) -> str:
    if not SECRET_PATTERN.fullmatch(value):
        raise SettingsError(f"{name} must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -")
    return value


def _database_url(name: str, value: str) -> str:
    try:
        scheme = urlsplit(value).scheme
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        scheme = ""
    if scheme == "sqlite" and value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    if scheme in ("postgresql", "postgres"):
        return value
    raise SettingsError(f"{name} must look like sqlite:///jobs.db or postgresql://user@host/dbname")


S3_URL_PATTERN = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[A-Za-z0-9._/-]*))?")


def split_s3_url(name: str, value: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://BUCKET/PREFIX`, the prefix without a slash at either end."""
    match = S3_URL_PATTERN.fullmatch(value)
    prefix = (match["prefix"] or "").strip("/") if match else ""
    if not match or ".." in prefix or "//" in prefix:
        raise SettingsError(f"{name} must look like s3://BUCKET or s3://BUCKET/PREFIX (bucket: 3 to 63 lowercase "
                            f"letters, digits, dots and hyphens; prefix: letters, digits, . _ - /), got {value!r}")
    return match["bucket"], prefix


def _s3_url(name: str, value: str) -> str:
    split_s3_url(name, value)
    return value


def _whole(least: int) -> Callable[[str, str], int]:
    """A parser of a whole number of at least `least`."""
    def parse(name: str, value: str) -> int:
        if not re.fullmatch(r"[0-9]+", value) or int(value) < least:
            raise SettingsError(f"{name} must be a whole number of {least} or more, got {value!r}")
        return int(value)

    return parse


def _regions(name: str, value: str) -> tuple[str, ...]:
    regions = tuple(r.strip().lower() for r in value.split(",") if r.strip())
    unknown = [r for r in regions if r not in EGRESS_IPS]
    if unknown:
        raise SettingsError(f"{name}: unknown region {unknown[0]!r}; known: {', '.join(EGRESS_IPS)}")
    return regions


def _log_format(name: str, value: str) -> str:
    if value not in ("text", "json"):
        raise SettingsError(f"{name} must be text or json, got {value!r}")
    return value


def _flag(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {value!r}")


def _whsec(name: str, value: str) -> str:
    """A Standard Webhooks secret: `whsec_` and base64, as the specification's libraries expect."""
    body = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True) if value.startswith("whsec_") else b""
    except ValueError:
        key = b""
    if len(key) < 24:
        raise SettingsError(f"{name} must be whsec_ followed by the base64 of at least 24 random bytes, e.g. "
                            "whsec_$(openssl rand -base64 32)")
    return value


def _command(name: str, value: str) -> str:
    try:
        if shlex.split(value):
            return value
    except ValueError:
        pass
    raise SettingsError(f"{name} must be a command line (split as a shell would, but run without one)")


def _mode(name: str, value: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", value) or int(value, 8) & 0o400 == 0:
        raise SettingsError(f"{name} must be an octal file mode the owner can read, such as 600 or 640")
    return int(value, 8)


def _webhook_path(name: str, value: str) -> str:
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise SettingsError(f"{name} must be a URL path such as /webhook, got {value!r}")
    return value


@dataclass(frozen=True)
class Setting:
    env: str
    field: str
    help: str
    parse: Callable[[str, str], object]
    default: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("SPEECHMATICS_API_KEY", "api_key", "Speechmatics API key (else the key saved by "
            "`speechmatics config set --auth-token`)", lambda n, v: v),
    Setting("SPEECHMATICS_BATCH_URL", "batch_url", "Batch API base URL; the emulator's URL for local work",
            _url, PRODUCTION_BATCH_URL),
    Setting("SPEECHMATICS_TIMEOUT", "api_timeout", "Seconds to wait for Speechmatics before a call counts as "
            "failed", _whole(1), "30"),
    Setting("WEBHOOK_URL", "webhook_url", "Public URL Speechmatics calls when a job finishes", _url),
    Setting("WEBHOOK_SECRET", "webhook_secret", "Key from which each job's own notification token is derived; "
            "it never leaves your machines", _secret),
    Setting("WEBHOOK_SECRET_PREVIOUS", "webhook_secret_previous", "Old secret whose tokens are still accepted "
            "during a rotation", _secret),
    Setting("DATABASE_URL", "database_url", "Job database: sqlite:///path or postgresql://user@host/db",
            _database_url, "sqlite:///jobs.db"),
    Setting("TRANSCRIPTS_DIR", "transcripts_dir", "Where <job_id>.json transcripts are stored (with "
            "TRANSCRIPTS_URL: only where bodies are spooled while they arrive)", lambda n, v: Path(v), "transcripts"),
    Setting("WEBHOOK_PATH", "webhook_path", "URL path of the notification endpoint", _webhook_path,
            "/webhook"),
    Setting("MAX_NOTIFICATION_MB", "max_notification_mb", "Largest notification body accepted (413 above)",
            _whole(1), "512"),
    Setting("ALLOWED_REGIONS", "allowed_regions", "Only accept notifications from these regions' "
            "Speechmatics egress IPs, e.g. eu1,us1 (off when empty)", _regions, ""),
    Setting("TRUSTED_PROXIES", "trusted_proxies", "Number of reverse proxies in front of the server whose "
            "X-Forwarded-For entries are trusted", _whole(0), "0"),
    Setting("METRICS_TOKEN", "metrics_token", "Bearer token /metrics requires (open to anyone who reaches "
            "the port when empty)", _secret),
    Setting("LOG_FORMAT", "log_format", "text, or json for one JSON object per log line", _log_format, "text"),
    Setting("ALLOW_PRIVATE_WEBHOOK_URL", "allow_private_webhook_url", "Allow a loopback, private or link-local "
            "WEBHOOK_URL with the production API (a deliberate tunnel)", _flag, "0"),
    Setting("TRANSCRIPTS_URL", "transcripts_url", "Store transcripts as objects PREFIX/<job_id>.json in "
            "S3-compatible storage, s3://BUCKET/PREFIX, instead of in TRANSCRIPTS_DIR (off when empty)", _s3_url),
    Setting("DELETE_AFTER_STORE", "delete_after_store", "Delete each job at Speechmatics once its transcript (or "
            "rejection) is stored here: the local copy is then the only one", _flag, "0"),
    Setting("KEEP_TRANSCRIPTS_DAYS", "keep_transcripts_days", "cronjob.py removes transcripts of jobs created more "
            "than this many days ago and marks them purged (kept for ever when empty)", _whole(1)),
    Setting("HANDOFF_URL", "handoff_url", "Hand each finished job on: POST its event, signed with "
            "HANDOFF_SECRET, to this URL (docs/handoff.md; off when empty)", _url),
    Setting("HANDOFF_SECRET", "handoff_secret", "Standard Webhooks secret (whsec_ and base64) that signs each "
            "hand-off POST", _whsec),
    Setting("HANDOFF_COMMAND", "handoff_command", "Hand each finished job on: run this command (no shell) with "
            "the event's JSON on its standard input; exit 0 means delivered (off when empty)", _command),
    Setting("HANDOFF_TIMEOUT", "handoff_timeout", "Seconds one hand-off attempt may take", _whole(1), "10"),
    Setting("HANDOFF_MAX_AGE", "handoff_max_age", "Seconds an event may keep failing before it is marked dead "
            "(kept, and sent again by cronjob.py --redeliver)", _whole(1), "259200"),
    Setting("TRANSCRIPTS_MODE", "transcripts_mode", "File mode of stored transcripts, in octal: 640 lets the "
            "server user's group read them (docs/handoff.md)", _mode, "600"),
)


@dataclass(frozen=True)
class Settings:
    api_key: str | None
    batch_url: str
    api_timeout: int
    webhook_url: str | None
    webhook_secret: str | None
    webhook_secret_previous: str | None
    database_url: str
    transcripts_dir: Path
    webhook_path: str
    max_notification_mb: int
    allowed_regions: tuple[str, ...]
    trusted_proxies: int
    metrics_token: str | None = None
    log_format: str = "text"
    allow_private_webhook_url: bool = False
    transcripts_url: str | None = None
    delete_after_store: bool = False
    keep_transcripts_days: int | None = None
    handoff_url: str | None = None
    handoff_secret: str | None = None
    handoff_command: str | None = None
    handoff_timeout: int = 10
    handoff_max_age: int = 259200
    transcripts_mode: int = 0o600

    def require(self, *names: str) -> Settings:
        """Fail, naming every variable at fault, unless every named setting has a usable value."""
        problems = self.problems(*names)
        if problems:
            raise SettingsError(*problems)
        return self

    def problems(self, *names: str) -> list[str]:
        """One line for each named setting that is missing, and for a WEBHOOK_URL no notification can reach."""
        problems = [f"{setting.env} is not set: {setting.help}" for setting in SETTINGS
                    if setting.field in names and not getattr(self, setting.field)]
        if "webhook_url" in names and self.webhook_url and self.batch_url and not self.allow_private_webhook_url:
            problem = unreachable_webhook_url(self.webhook_url, self.batch_url)
            if problem:
                problems.append(problem)
        if self.handoff_url and not self.handoff_secret and "handoff_secret" not in names:
            problems.append("HANDOFF_SECRET is not set: HANDOFF_URL's events must be signed (docs/handoff.md)")
        return problems

    @property
    def max_notification_bytes(self) -> int:
        return self.max_notification_mb * 1024 * 1024


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None,
                  required: tuple[str, ...] = ()) -> Settings:
    """Read every setting: a command-line override wins over the environment, which wins over the default.
    Every invalid setting, and every `required` one missing, is reported in one SettingsError."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, object] = {}
    problems: list[str] = []
    invalid: set[str] = set()
    for setting in SETTINGS:
        raw = overrides.get(setting.field)
        if raw is None:
            raw = environ.get(setting.env) or setting.default
        try:
            values[setting.field] = None if raw is None else setting.parse(setting.env, str(raw))
        except SettingsError as error:  # reported; the rest are still checked
            problems += error.messages
            values[setting.field], invalid = None, invalid | {setting.field}
    if not values["api_key"]:
        values["api_key"] = saved_api_key()
    settings = Settings(**values)  # type: ignore[arg-type]
    problems += settings.problems(*(name for name in required if name not in invalid))
    if problems:
        raise SettingsError(*problems)
    return settings


PRIVATE_HOST_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def unreachable_webhook_url(webhook_url: str, batch_url: str) -> str | None:
    """Why Speechmatics' production service can never deliver to `webhook_url`, or None.

    A notification is sent from Speechmatics' cloud, so a loopback, private or link-local address (or a
    `localhost`-style name) with the production API means every notification is lost. Only literal addresses
    and such names are judged: resolving a name would need the network, and a name may resolve differently
    where the service runs. The emulator, or any API that is not Speechmatics' cloud, may reach them."""
    api_host = (urlsplit(batch_url).hostname or "").lower()
    if not (api_host == "speechmatics.com" or api_host.endswith(".speechmatics.com")):
        return None
    host = (urlsplit(webhook_url).hostname or "").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
        private = address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
    except ValueError:
        private = host in PRIVATE_HOST_NAMES or host.endswith((".localhost", ".local"))
    if not private:
        return None
    return (f"WEBHOOK_URL {webhook_url} is a loopback, private or link-local address, which Speechmatics' "
            f"service at {api_host} can never reach, so every notification would be lost; use a public URL, or "
            "set ALLOW_PRIVATE_WEBHOOK_URL=1 (--allow-private-webhook-url) for a deliberate tunnel")


def saved_api_key() -> str | None:
    """The key stored by `speechmatics config set --auth-token`, which speechmatics-python owns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from speechmatics.config import read_config_from_home
    try:
        return (read_config_from_home() or {}).get("auth_token") or None
    except (Exception, SystemExit):  # a malformed config file or missing profile: no saved key
        return None


def add_arguments(parser: argparse.ArgumentParser, *field_names: str) -> None:
    """Add a --flag for each named setting, documented with its environment variable."""
    for setting in SETTINGS:
        if setting.field in field_names:
            flag = "--" + setting.field.replace("_", "-")
            if setting.parse is _flag:  # a switch: present means on
                parser.add_argument(flag, dest=setting.field, action="store_const", const="1",
                                    help=f"{setting.help}; env {setting.env}=1")
                continue
            default = f" (default: {setting.default})" if setting.default else ""
            parser.add_argument(flag, dest=setting.field, metavar=setting.env,
                                help=f"{setting.help}; env {setting.env}{default}")
