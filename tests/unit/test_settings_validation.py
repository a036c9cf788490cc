"""Unit tests of notification_flow.settings: every validator, defaults, require(), overrides and the SETTINGS table."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from notification_flow import settings as settings_module
from notification_flow.settings import (
    EGRESS_IPS,
    PRODUCTION_BATCH_URL,
    SETTINGS,
    Settings,
    SettingsError,
    add_arguments,
    load_settings,
    split_s3_url,
)

SECRET = "unit-test-secret-0123456789"


@pytest.fixture(autouse=True)
def no_saved_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "saved_api_key", lambda: None)


@pytest.mark.parametrize("env, field, value, parsed", [
    ("SPEECHMATICS_BATCH_URL", "batch_url", "https://eu1.asr.api.speechmatics.com/v2",
     "https://eu1.asr.api.speechmatics.com/v2"),
    ("SPEECHMATICS_BATCH_URL", "batch_url", "http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("WEBHOOK_URL", "webhook_url", "https://example.com/webhook", "https://example.com/webhook"),
    ("WEBHOOK_SECRET", "webhook_secret", "a" * 16, "a" * 16),
    ("WEBHOOK_SECRET", "webhook_secret", "A-z_0.9~+/=" + "x" * 245, "A-z_0.9~+/=" + "x" * 245),
    ("WEBHOOK_SECRET_PREVIOUS", "webhook_secret_previous", SECRET, SECRET),
    ("DATABASE_URL", "database_url", "sqlite:///jobs.db", "sqlite:///jobs.db"),
    ("DATABASE_URL", "database_url", "sqlite:////var/lib/jobs.db", "sqlite:////var/lib/jobs.db"),
    ("DATABASE_URL", "database_url", "postgresql://user@db/jobs", "postgresql://user@db/jobs"),
    ("DATABASE_URL", "database_url", "postgres://db/jobs", "postgres://db/jobs"),
    ("SPEECHMATICS_TIMEOUT", "api_timeout", "1", 1),
    ("SPEECHMATICS_TIMEOUT", "api_timeout", "45", 45),
    ("MAX_NOTIFICATION_MB", "max_notification_mb", "2", 2),
    ("TRUSTED_PROXIES", "trusted_proxies", "0", 0),
    ("TRUSTED_PROXIES", "trusted_proxies", "2", 2),
    ("ALLOWED_REGIONS", "allowed_regions", "eu1,us1", ("eu1", "us1")),
    ("ALLOWED_REGIONS", "allowed_regions", " EU2 , au1 ,", ("eu2", "au1")),
    ("WEBHOOK_PATH", "webhook_path", "/hooks/speech-matics_v2.0~x", "/hooks/speech-matics_v2.0~x"),
    ("TRANSCRIPTS_DIR", "transcripts_dir", "/data/transcripts", Path("/data/transcripts")),
    ("TRANSCRIPTS_URL", "transcripts_url", "s3://my-bucket", "s3://my-bucket"),
    ("TRANSCRIPTS_URL", "transcripts_url", "s3://my.bucket-2/speech/transcripts/", "s3://my.bucket-2/speech/transcripts/"),
    ("SPEECHMATICS_API_KEY", "api_key", "any key at all", "any key at all"),
])
def test_good_values_are_parsed(env: str, field: str, value: str, parsed: object) -> None:
    assert getattr(load_settings(environ={env: value}), field) == parsed


@pytest.mark.parametrize("env, value", [
    ("SPEECHMATICS_BATCH_URL", "ftp://example.com/v2"),
    ("SPEECHMATICS_BATCH_URL", "not a url"),
    ("SPEECHMATICS_BATCH_URL", "https://"),
    ("WEBHOOK_URL", "example.com/webhook"),
    ("WEBHOOK_SECRET", "a" * 15),
    ("WEBHOOK_SECRET", "a" * 257),
    ("WEBHOOK_SECRET", "sixteen chars wi"),
    ("WEBHOOK_SECRET", "secret:with:colons"),
    ("WEBHOOK_SECRET", "s\u00e9cretsecretsecret"),
    ("WEBHOOK_SECRET_PREVIOUS", "short"),
    ("DATABASE_URL", "mysql://db/jobs"),
    ("DATABASE_URL", "sqlite:///"),
    ("DATABASE_URL", "sqlite://jobs.db"),
    ("DATABASE_URL", "jobs.db"),
    ("SPEECHMATICS_TIMEOUT", "0"),
    ("SPEECHMATICS_TIMEOUT", "-5"),
    ("SPEECHMATICS_TIMEOUT", "soon"),
    ("MAX_NOTIFICATION_MB", "1.5"),
    ("TRUSTED_PROXIES", "-1"),
    ("TRUSTED_PROXIES", "one"),
    ("ALLOWED_REGIONS", "eu3"),
    ("ALLOWED_REGIONS", "eu1,mars"),
    ("WEBHOOK_PATH", "webhook"),
    ("WEBHOOK_PATH", "/"),
    ("WEBHOOK_PATH", "/a//b"),
    ("WEBHOOK_PATH", "/webhook/"),
    ("WEBHOOK_PATH", "/web hook"),
    ("WEBHOOK_PATH", "/webhook?x=1"),
    ("TRANSCRIPTS_URL", "https://bucket.s3.amazonaws.com/x"),
    ("TRANSCRIPTS_URL", "s3://"),
    ("TRANSCRIPTS_URL", "s3://My_Bucket/x"),
    ("TRANSCRIPTS_URL", "s3://ab"),
    ("TRANSCRIPTS_URL", "s3://bucket/../x"),
    ("TRANSCRIPTS_URL", "s3://bucket/a//b"),
    ("TRANSCRIPTS_URL", "s3://bucket/x?versionId=1"),
    ("TRANSCRIPTS_URL", "s3://user:secret@bucket/x"),
])
def test_bad_values_are_refused_naming_the_variable(env: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{env}"):
        load_settings(environ={env: value})


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"WEBHOOK_SECRET": "leaky secret value"})
    assert "leaky" not in str(raised.value)


def test_an_unknown_region_names_the_known_ones() -> None:
    with pytest.raises(SettingsError, match="'mars'") as raised:
        load_settings(environ={"ALLOWED_REGIONS": "mars"})
    assert all(region in str(raised.value) for region in EGRESS_IPS)


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings(api_key=None, batch_url=PRODUCTION_BATCH_URL, api_timeout=30, webhook_url=None,
                                webhook_secret=None, webhook_secret_previous=None, database_url="sqlite:///jobs.db",
                                transcripts_dir=Path("transcripts"), webhook_path="/webhook", max_notification_mb=512,
                                allowed_regions=(), trusted_proxies=0)
    assert settings.max_notification_bytes == 512 * 1024 * 1024


@pytest.mark.parametrize("env, field, default", [("DATABASE_URL", "database_url", "sqlite:///jobs.db"),
                                                 ("WEBHOOK_PATH", "webhook_path", "/webhook"),
                                                 ("SPEECHMATICS_TIMEOUT", "api_timeout", 30),
                                                 ("WEBHOOK_URL", "webhook_url", None)])
def test_an_empty_variable_means_the_default(env: str, field: str, default: object) -> None:
    assert getattr(load_settings(environ={env: ""}), field) == default


@pytest.mark.parametrize("names, env", [(("webhook_secret",), "WEBHOOK_SECRET"),
                                        (("webhook_url",), "WEBHOOK_URL"),
                                        (("api_key",), "SPEECHMATICS_API_KEY"),
                                        (("webhook_secret", "webhook_url"), "WEBHOOK_URL")])
def test_require_names_the_missing_variable(names: tuple[str, ...], env: str) -> None:
    settings = load_settings(environ={"WEBHOOK_SECRET": SECRET} if env != "WEBHOOK_SECRET" else {})
    with pytest.raises(SettingsError, match=f"^{env} is not set"):
        settings.require(*names)


def test_require_returns_the_settings_when_all_are_set() -> None:
    settings = load_settings(environ={"WEBHOOK_SECRET": SECRET, "WEBHOOK_URL": "https://example.com/webhook"})
    assert settings.require("webhook_secret", "webhook_url") is settings


def test_overrides_win_over_the_environment_and_are_validated() -> None:
    environ = {"DATABASE_URL": "sqlite:///env.db", "MAX_NOTIFICATION_MB": "3", "WEBHOOK_PATH": "/env"}
    settings = load_settings(environ=environ, overrides={"database_url": "postgresql://db/flag",
                                                         "max_notification_mb": 7, "webhook_path": None})
    assert settings.database_url == "postgresql://db/flag"
    assert settings.max_notification_mb == 7
    assert settings.webhook_path == "/env"  # an absent flag (None) leaves the environment's value
    with pytest.raises(SettingsError, match=r"^MAX_NOTIFICATION_MB"):
        load_settings(environ=environ, overrides={"max_notification_mb": 0})


def test_command_line_flags_reach_the_settings() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, "database_url", "max_notification_mb", "allowed_regions")
    args = parser.parse_args(["--database-url", "postgresql://db/flag", "--allowed-regions", "us1"])
    settings = load_settings(environ={"DATABASE_URL": "sqlite:///env.db", "MAX_NOTIFICATION_MB": "4"},
                             overrides=vars(args))
    assert (settings.database_url, settings.max_notification_mb, settings.allowed_regions) == (
        "postgresql://db/flag", 4, ("us1",))
    assert "--webhook-secret" not in parser.format_help()
    assert "env DATABASE_URL" in parser.format_help()


def test_the_saved_api_key_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "saved_api_key", lambda: "saved-key")
    assert load_settings(environ={}).api_key == "saved-key"
    assert load_settings(environ={"SPEECHMATICS_API_KEY": "env-key"}).api_key == "env-key"


def test_the_settings_table_matches_the_dataclass() -> None:
    assert [setting.field for setting in SETTINGS] == [field.name for field in dataclasses.fields(Settings)]
    assert len({setting.env for setting in SETTINGS}) == len(SETTINGS)
    for setting in SETTINGS:
        if setting.default is not None:
            setting.parse(setting.env, setting.default)  # every default passes its own validator
        assert setting.help


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://my-bucket", "my-bucket", ""), ("s3://my-bucket/", "my-bucket", ""),
    ("s3://my-bucket/a/b/", "my-bucket", "a/b"), ("s3://my-bucket/a", "my-bucket", "a"),
])
def test_an_s3_url_names_the_bucket_and_a_prefix_without_slashes_at_its_ends(url: str, bucket: str,
                                                                            prefix: str) -> None:
    assert split_s3_url("TRANSCRIPTS_URL", url) == (bucket, prefix)
