"""A missing or invalid setting: one line naming it, exit code 2, and nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from notification_flow.jobs import open_store
from notification_flow.settings import SETTINGS
from tests import RUNTIME_PYTHON
from tests.integration.support import POSTGRES_URL, ROOT, SECRET, free_port, postgres_problem, script_env

GOOD = {"SPEECHMATICS_API_KEY": "key", "WEBHOOK_URL": "https://example.com/webhook", "WEBHOOK_SECRET": SECRET}


def run(script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNTIME_PYTHON, str(ROOT / script), *args], cwd=tmp_path, env=script_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("script, env, named", [
    ("client.py", {**GOOD, "WEBHOOK_URL": ""}, "WEBHOOK_URL"),
    ("client.py", {**GOOD, "WEBHOOK_URL": "ftp://example.com/x"}, "WEBHOOK_URL"),
    ("client.py", {**GOOD, "WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET"),
    ("client.py", {**GOOD, "WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET"),
    ("client.py", {**GOOD, "SPEECHMATICS_API_KEY": ""}, "SPEECHMATICS_API_KEY"),
    ("client.py", {**GOOD, "SPEECHMATICS_BATCH_URL": "not a url"}, "SPEECHMATICS_BATCH_URL"),
    ("client.py", {**GOOD, "SPEECHMATICS_TIMEOUT": "soon"}, "SPEECHMATICS_TIMEOUT"),
    ("client.py", {**GOOD, "DATABASE_URL": "mysql://db/jobs"}, "DATABASE_URL"),
    ("client.py", {**GOOD, "DATABASE_URL": "sqlite:///no/such/dir/jobs.db"}, "DATABASE_URL"),
    ("client.py", {**GOOD, "DATABASE_URL": "postgresql://postgres@127.0.0.1:notaport/test"}, "DATABASE_URL"),
    ("cronjob.py", {**GOOD, "DATABASE_URL": "postgresql://[::1/test"}, "DATABASE_URL"),
    ("server.py", {**GOOD, "DATABASE_URL": "postgresql://nobody:wrong@127.0.0.1:5432/test"}, "DATABASE_URL"),
    ("server.py", {**GOOD, "WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET"),
    ("server.py", {**GOOD, "MAX_NOTIFICATION_MB": "0"}, "MAX_NOTIFICATION_MB"),
    ("server.py", {**GOOD, "ALLOWED_REGIONS": "eu1,mars"}, "ALLOWED_REGIONS"),
    ("server.py", {**GOOD, "WEBHOOK_PATH": "webhook"}, "WEBHOOK_PATH"),
    ("cronjob.py", {**GOOD, "SPEECHMATICS_API_KEY": ""}, "SPEECHMATICS_API_KEY"),
    ("cronjob.py", {**GOOD, "DATABASE_URL": "sqlite:///"}, "DATABASE_URL"),
])
def test_bad_setting_is_one_line_naming_it_with_exit_2(tmp_path: Path, script: str, env: dict[str, str],
                                                      named: str) -> None:
    result = run(script, tmp_path, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert SECRET not in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def unavailable_databases() -> list[str]:
    """A server that is down (nothing listens on the port) and a database that does not exist on a live one."""
    missing = urlsplit(POSTGRES_URL)._replace(path="/no_such_database").geturl()
    return [f"postgresql://postgres@127.0.0.1:{free_port()}/test", missing]


@pytest.mark.parametrize("script", ["cronjob.py", "server.py", "client.py"])
@pytest.mark.parametrize("which", [0, 1], ids=["server down", "database missing"])
def test_a_database_that_is_down_or_missing_exits_75_to_try_again(tmp_path: Path, script: str, which: int) -> None:
    """An outage is EX_TEMPFAIL (75: systemd or cron tries again), never 2, which says a setting is wrong."""
    if which == 1 and postgres_problem():
        pytest.skip(postgres_problem() or "")
    result = run(script, tmp_path, **{**GOOD, "DATABASE_URL": unavailable_databases()[which]})
    assert result.returncode == 75, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the database is unavailable, try again"), lines
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_flags_override_the_environment(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'flag.db'}")  # --list only reads a database that exists
    result = run("client.py", tmp_path, "--list", "--database-url", f"sqlite:///{tmp_path / 'flag.db'}",
                 DATABASE_URL=f"sqlite:///{tmp_path / 'env.db'}")
    assert result.returncode == 0
    assert (tmp_path / "flag.db").exists() and not (tmp_path / "env.db").exists()


def test_api_key_saved_by_the_speechmatics_cli_is_used(tmp_path: Path) -> None:
    speechmatics = Path(RUNTIME_PYTHON).with_name("speechmatics")
    subprocess.run([str(speechmatics), "config", "set", "--auth-token", "saved-key"], env=script_env(tmp_path),
                   check=True, capture_output=True)
    saved = subprocess.run([RUNTIME_PYTHON, "-c", "from notification_flow.settings import load_settings; "
                            "print(load_settings().api_key)"], env=script_env(tmp_path), cwd=ROOT,
                           capture_output=True, text=True, check=True)
    assert saved.stdout.strip() == "saved-key"
    from_env = subprocess.run([RUNTIME_PYTHON, "-c", "from notification_flow.settings import load_settings; "
                               "print(load_settings().api_key)"], env=script_env(tmp_path, SPEECHMATICS_API_KEY="env"),
                              cwd=ROOT, capture_output=True, text=True, check=True)
    assert from_env.stdout.strip() == "env"


def test_configuration_page_lists_every_setting() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"\n| `{setting.env}` |" in page, f"no row for {setting.env}"


@pytest.mark.parametrize("script", ["client.py", "cronjob.py", "server.py"])
def test_several_bad_settings_are_one_line_each_in_one_run(tmp_path: Path, script: str) -> None:
    env = {**GOOD, "SPEECHMATICS_TIMEOUT": "soon", "DATABASE_URL": "mysql://db/jobs", "ALLOWED_REGIONS": "mars",
           "MAX_NOTIFICATION_MB": "0", "WEBHOOK_SECRET": "short", "SPEECHMATICS_API_KEY": ""}
    expected = {"client.py": {"SPEECHMATICS_TIMEOUT", "DATABASE_URL", "ALLOWED_REGIONS", "MAX_NOTIFICATION_MB",
                              "WEBHOOK_SECRET", "SPEECHMATICS_API_KEY"},
                "cronjob.py": {"SPEECHMATICS_TIMEOUT", "DATABASE_URL", "ALLOWED_REGIONS", "MAX_NOTIFICATION_MB",
                               "WEBHOOK_SECRET", "SPEECHMATICS_API_KEY"},
                "server.py": {"SPEECHMATICS_TIMEOUT", "DATABASE_URL", "ALLOWED_REGIONS", "MAX_NOTIFICATION_MB",
                              "WEBHOOK_SECRET"}}[script]
    result = run(script, tmp_path, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    assert {line.split()[1].rstrip(":") for line in lines} == expected and len(lines) == len(expected), lines
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


@pytest.mark.parametrize("script, args, env", [
    ("server.py", (), {**GOOD, "WEBHOOK_SECRET": "", "MAX_NOTIFICATION_MB": "0"}),
    ("cronjob.py", ("--grace", "-5"), GOOD),
    ("client.py", ("--json",), GOOD),
])
def test_with_json_logs_a_scripts_errors_are_json_too(tmp_path: Path, script: str, args: tuple[str, ...],
                                                      env: dict[str, str]) -> None:
    import json

    result = run(script, tmp_path, *args, LOG_FORMAT="json", **env)
    assert result.returncode == 2, result.stderr
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert entries and all(entry["level"] == "error" for entry in entries), entries
    assert list(tmp_path.iterdir()) == []


def test_audio_that_cannot_be_sent_at_all_writes_nothing(tmp_path: Path) -> None:
    """A new user's first try with the wrong files: each refused in one line, and no database left behind."""
    (tmp_path / "empty.wav").write_bytes(b"")
    result = run("client.py", tmp_path, "empty.wav", "missing.wav", **GOOD)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["empty.wav: the file is empty; not submitted",
                                                  "missing.wav: cannot read: No such file or directory"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.wav"]
