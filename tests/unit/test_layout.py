"""The shape the project promises its readers: thin scripts, one place where a job's state changes, layers that
do not lean on each other, and in-process tests that start nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("client.py", "server.py", "cronjob.py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def python_files(directory: str) -> list[Path]:
    return sorted((ROOT / directory).rglob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_stays_short_enough_to_read(script: str) -> None:
    assert len((ROOT / script).read_text().splitlines()) <= 200


@pytest.mark.parametrize(("importer", "imported"), [("bench", "tests"), ("tests", "bench"),
                                                    ("emulator", "notification_flow"),
                                                    ("notification_flow", "emulator"), ("notification_flow", "seaweed"),
                                                    ("seaweed", "notification_flow")])
def test_these_never_import_each_other(importer: str, imported: str) -> None:
    offenders = [str(path.relative_to(ROOT)) for path in python_files(importer)
                 if any(name == imported or name.startswith(f"{imported}.") for name in imported_modules(path))]
    assert offenders == []


def test_the_package_never_imports_the_scripts() -> None:
    for path in python_files("notification_flow"):
        assert not {"client", "server", "cronjob"} & imported_modules(path), path


def test_unit_tests_start_no_process_and_no_emulator() -> None:
    for path in python_files("tests/unit"):
        used = imported_modules(path)
        assert not used & {"subprocess", "emulator", "multiprocessing"}, path
        assert not any(name.startswith("tests.integration") for name in used), path


def test_a_jobs_state_is_changed_in_one_place_only() -> None:
    """One statement writes `status` (`JobStore._write_move`); the lifecycle table decides every value it writes."""
    writes = []
    for path in python_files("notification_flow"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\bSET\b(?:(?!\bWHERE\b).)*\bstatus\s*=", line):
                writes.append(f"{path.name}:{number}")
    assert len(writes) == 1 and writes[0].startswith("jobs.py:"), writes
