"""The tests. They start the scripts with RUNTIME_PYTHON (make test sets it), else .venv's python where there is
one: it has only what requirements.txt installs, as a server's does. Else pytest's own python."""

import os
import sys
from pathlib import Path

_VENV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
RUNTIME_PYTHON = os.path.abspath(os.environ.get("RUNTIME_PYTHON") or
                                 (str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable))
