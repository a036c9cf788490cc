"""``python -m emulator`` as a real process: URL line on stdout, options from CLI and env, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from emulator.options import FIELDS
from tests import RUNTIME_PYTHON
from tests.emulator.support import API_KEY, AUTH, submit_id, wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [RUNTIME_PYTHON, "-m", "emulator", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **(env or {})},
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_start_serve_and_stop_cleanly(stop: signal.Signals) -> None:
    with running("--port", "0", "--api-key", API_KEY, "--processing-seconds", "0.1") as (process, url):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v2")
        job_id = submit_id(url)
        wait_for(lambda: requests.get(f"{url}/jobs/{job_id}", headers=AUTH, timeout=5).json()["job"]["status"]
                 == "done", message="the job to finish")
        process.send_signal(stop)
        assert process.wait(timeout=15) == 0
        assert "stopped" in (process.stderr.read() if process.stderr else "")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/jobs", headers=AUTH, timeout=5)


def test_options_come_from_the_environment_and_the_command_line_wins() -> None:
    env = {"EMULATOR_API_KEY": "env-key", "EMULATOR_DROP_FRACTION": "0.5", "EMULATOR_SEED": "42",
           "EMULATOR_HOLD_NOTIFICATIONS": "true", "EMULATOR_RETENTION_SECONDS": "99"}
    with running("--drop-fraction", "0.25", env=env) as (process, url):
        headers = {"Authorization": "Bearer env-key"}
        base = url.removesuffix("/v2")
        faults = requests.get(f"{base}/_emulator/faults", headers=headers, timeout=5).json()
        assert faults["drop_fraction"] == 0.25 and faults["hold_notifications"] is True and faults["seed"] == 42
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_help_lists_every_option_with_its_environment_variable() -> None:
    result = subprocess.run([RUNTIME_PYTHON, "-m", "emulator", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=True)
    text = " ".join(result.stdout.split())
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in text
        assert "EMULATOR_" + name.upper() in text


@pytest.mark.parametrize("args", [[], ["--api-key", "k", "--drop-fraction", "3"], ["--api-key", "k", "--port", "x"]])
def test_bad_options_exit_2(args: list[str]) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EMULATOR_")}
    result = subprocess.run([RUNTIME_PYTHON, "-m", "emulator", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, env=env, check=False)
    assert result.returncode == 2 and "error:" in result.stderr and result.stdout == ""
