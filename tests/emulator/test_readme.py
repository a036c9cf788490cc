"""emulator/README.md documents every option exactly as EmulatorOptions declares it."""

from __future__ import annotations

import re
from pathlib import Path

from emulator.options import ENV_PREFIX, FIELDS

README = Path(__file__).resolve().parents[2] / "emulator" / "README.md"
HEADER = "| option | CLI flag / environment variable | default | runtime | meaning |"
NAME, SWITCHES = re.compile(r"`(\w+)`"), re.compile(r"`(--[\w-]+)` / `(\w+)`")


def option_rows() -> dict[str, list[str]]:
    """The options table's rows by option name, each as its five stripped cells."""
    lines = README.read_text().splitlines()
    rows: dict[str, list[str]] = {}
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = NAME.fullmatch(cells[0])
        assert len(cells) == 5 and name, f"malformed options row: {line}"
        assert name[1] not in rows, f"option listed twice: {name[1]}"
        rows[name[1]] = cells
    return rows


def test_options_table_matches_emulator_options() -> None:
    rows = option_rows()
    assert sorted(set(rows) - set(FIELDS)) == [], "rows naming no EmulatorOptions field"
    assert sorted(set(FIELDS) - set(rows)) == [], "EmulatorOptions fields without a row"
    for name, spec in FIELDS.items():
        _, switches, default, runtime, meaning = rows[name]
        assert SWITCHES.fullmatch(switches), f"{name}: {switches}"
        assert SWITCHES.fullmatch(switches).groups() == ("--" + name.replace("_", "-"), ENV_PREFIX + name.upper())
        assert runtime == ("yes" if spec.metadata["fault"] else ""), name
        assert default and meaning, name
