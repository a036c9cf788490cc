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


def package_imports() -> dict[str, set[str]]:
    """Each module of the package, and the modules of the package it imports (at any depth in its code)."""
    graph: dict[str, set[str]] = {}
    for path in python_files("notification_flow"):
        names = imported_modules(path)
        graph[path.stem] = {name.split(".", 1)[1] for name in names
                            if name.startswith("notification_flow.")} | _from_package_imports(path)
    return graph


def _from_package_imports(path: Path) -> set[str]:
    """`from notification_flow import jsonv2` names a module too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module == "notification_flow" for alias in node.names}


def test_the_package_has_no_import_cycle() -> None:
    graph = package_imports()
    cycles = []

    def visit(module: str, path: tuple[str, ...]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported == path[0]:
                cycles.append(" -> ".join((*path, imported)))
            elif imported not in path and len(path) < len(graph):
                visit(imported, (*path, imported))

    for module in graph:
        visit(module, (module,))
    assert cycles == []


def test_no_module_of_the_package_is_over_four_hundred_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in python_files("notification_flow")}
    assert {name: size for name, size in sizes.items() if size > 400} == {}


def test_one_json_parser_beyond_the_standard_library() -> None:
    requirements = (ROOT / "requirements.txt").read_text().lower()
    parsers = [name for name in ("ijson", "msgspec", "orjson", "ujson", "simdjson", "rapidjson")
               if re.search(rf"^{name}\b", requirements, re.MULTILINE)]
    assert len(parsers) == 1, parsers
