"""In-process tests of the hardening's pure parts: the private-webhook check, every bad setting at once, escaped
log lines, the per-job token, thread-safe counting, one-line argument errors, GUNICORN_CMD_ARGS, audio checks."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from notification_flow import settings as settings_module
from notification_flow.auth import job_token
from notification_flow.cli import audio_problem, number_in
from notification_flow.db import describe_database
from notification_flow.logs import EscapingFormatter, printable
from notification_flow.reconcile import Reconciler
from notification_flow.settings import PRODUCTION_BATCH_URL, SettingsError, load_settings, unreachable_webhook_url

SECRET = "unit-test-secret-0123456789"


@pytest.fixture(autouse=True)
def no_saved_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "saved_api_key", lambda: None)


@pytest.mark.parametrize("webhook", ["http://localhost/w", "http://LOCALHOST./w", "http://app.localhost/w",
                                     "http://127.0.0.1:8080/w", "http://127.8.9.10/w", "http://[::1]/w",
                                     "http://10.1.2.3/w", "http://172.16.0.1/w", "https://192.168.0.10/w",
                                     "http://169.254.169.254/w", "http://[fe80::1]/w", "http://0.0.0.0/w",
                                     "http://printer.local/w", "http://[fd00::1]/w"])
@pytest.mark.parametrize("api", [PRODUCTION_BATCH_URL, "https://eu1.asr.api.speechmatics.com/v2"])
def test_a_private_webhook_url_with_speechmatics_api_is_named_unreachable(webhook: str, api: str) -> None:
    problem = unreachable_webhook_url(webhook, api)
    assert problem and problem.startswith("WEBHOOK_URL") and "ALLOW_PRIVATE_WEBHOOK_URL" in problem


@pytest.mark.parametrize("webhook, api", [("https://hooks.example.com/w", PRODUCTION_BATCH_URL),
                                          ("https://8.8.8.8/w", PRODUCTION_BATCH_URL),
                                          ("http://127.0.0.1:8080/w", "http://127.0.0.1:8800/v2"),  # the emulator
                                          ("http://localhost/w", "https://speechmatics.example.org/v2")])
def test_public_urls_and_local_apis_are_fine(webhook: str, api: str) -> None:
    assert unreachable_webhook_url(webhook, api) is None


def test_the_check_is_part_of_requiring_a_webhook_url_and_can_be_allowed() -> None:
    environ = {"WEBHOOK_URL": "http://localhost:8080/webhook", "WEBHOOK_SECRET": SECRET,
               "SPEECHMATICS_API_KEY": "k"}
    with pytest.raises(SettingsError, match="never reach"):
        load_settings(environ=environ, required=("webhook_url",))
    assert load_settings(environ={**environ, "ALLOW_PRIVATE_WEBHOOK_URL": "1"}, required=("webhook_url",))
    assert load_settings(environ=environ, overrides={"allow_private_webhook_url": "1"}, required=("webhook_url",))
    assert load_settings(environ=environ)  # only the client, which requires a webhook URL, checks it


def test_every_bad_or_missing_setting_is_reported_at_once() -> None:
    environ = {"SPEECHMATICS_TIMEOUT": "soon", "DATABASE_URL": "mysql://x", "WEBHOOK_SECRET": "short",
               "ALLOWED_REGIONS": "mars"}
    with pytest.raises(SettingsError) as raised:
        load_settings(environ=environ, required=("api_key", "webhook_url", "webhook_secret"))
    named = [message.split()[0].rstrip(":") for message in raised.value.messages]
    assert sorted(named) == sorted(["SPEECHMATICS_API_KEY", "SPEECHMATICS_TIMEOUT", "WEBHOOK_URL", "WEBHOOK_SECRET",
                                    "DATABASE_URL", "ALLOWED_REGIONS"])
    assert len(raised.value.messages) == 6  # WEBHOOK_SECRET once: invalid, not also "not set"


@pytest.mark.parametrize("text, escaped", [("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("\x1b[31mred", "\\x1b[31mred"),
                                           ("x\u2028y", "x\\u2028y"), ("\u202etxt", "\\u202etxt"),
                                           ("ok-id é", "ok-id é")])
def test_printable_escapes_control_characters_like_repr(text: str, escaped: str) -> None:
    assert printable(text) == escaped
    assert printable(printable(text)) == escaped


def test_the_log_formatter_keeps_every_record_on_one_line() -> None:
    record = logging.LogRecord("server", logging.INFO, __file__, 1, "job=%s", ("x\n2026-01-01 INFO forged",), None)
    line = EscapingFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO job=x\\n2026-01-01 INFO forged" and "\n" not in line


def test_a_token_is_bound_to_its_reference_and_its_secret() -> None:
    token = job_token(SECRET, "a" * 32)
    version, reference, signature = token.split(".")
    assert (version, reference) == ("v1", "a" * 32) and SECRET not in token
    assert len(signature) == 43 and "=" not in signature  # base64url of 32 bytes, unpadded
    assert job_token(SECRET, "b" * 32) != token and job_token("another-secret-0123456789", "a" * 32) != token
    with pytest.raises(ValueError):
        job_token(SECRET, "has.dots")


def test_the_summary_is_counted_under_a_lock_from_every_worker() -> None:
    reconciler = Reconciler(store=None, api=None, transcripts=None)  # type: ignore[arg-type]
    held: list[bool] = []

    class RecordingLock:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def __enter__(self) -> None:
            self.lock.acquire()
            held.append(True)

        def __exit__(self, *exc: Any) -> None:
            self.lock.release()

    reconciler.counting = RecordingLock()  # type: ignore[assignment]
    threads = [threading.Thread(target=lambda: [reconciler.count("checked", "still running") for _ in range(500)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reconciler.summary == {"checked": 4000, "still running": 4000} and len(held) == 4000


@pytest.mark.parametrize("kind, low, high, text", [(int, 1, 65535, "99999"), (int, 1, None, "0"),
                                                   (float, 0, None, "-5"), (float, 0, None, "nan"),
                                                   (int, 1, None, "many")])
def test_numbers_out_of_range_are_refused(kind: type, low: float, high: float | None, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        number_in(kind, low, high)(text)


def test_gunicorn_cmd_args_are_applied_over_our_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from notification_flow.wsgi import _Gunicorn

    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--timeout 300 --access-logfile -")
    app = _Gunicorn(lambda: None, {"bind": "127.0.0.1:8080", "timeout": 120, "accesslog": None, "workers": 2})
    assert app.cfg.timeout == 300 and app.cfg.accesslog == "-" and app.cfg.workers == 2


def test_gunicorns_control_socket_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its default path is one per home, shared by every server there; GUNICORN_CMD_ARGS may name one."""
    from notification_flow.wsgi import _Gunicorn, gunicorn_options

    monkeypatch.setenv("GUNICORN_CMD_ARGS", "")
    assert _Gunicorn(lambda: None, gunicorn_options("127.0.0.1", 8080, 1, 1)).cfg.control_socket_disable
    monkeypatch.setenv("GUNICORN_CMD_ARGS", f"--control-socket {tmp_path / 'gunicorn.ctl'}")
    asked = _Gunicorn(lambda: None, gunicorn_options("127.0.0.1", 8080, 1, 1)).cfg
    assert not asked.control_socket_disable and asked.control_socket == str(tmp_path / "gunicorn.ctl")


def test_empty_and_unreadable_audio_are_named(tmp_path: Path) -> None:
    empty, missing, good = tmp_path / "empty.wav", tmp_path / "missing.wav", tmp_path / "good.wav"
    empty.write_bytes(b"")
    good.write_bytes(b"RIFF")
    assert "is empty" in (audio_problem(empty) or "")
    assert "cannot read" in (audio_problem(missing) or "") and "cannot read" in (audio_problem(tmp_path) or "")
    assert audio_problem(good) is None


def test_a_database_is_described_by_host_port_and_name_never_its_password() -> None:
    where = describe_database("postgresql://me:hunter2@db.internal:6543/jobs?sslmode=require")
    assert where == "PostgreSQL host db.internal port 6543 database jobs"
    assert "hunter2" not in describe_database("postgresql://me:hunter2@db.internal/jobs")
