"""The tests. They start the scripts with RUNTIME_PYTHON, which `make test` sets to .venv's python: it has only
what requirements.txt installs, as a server's does. Without it (pytest run by hand), pytest's own python."""

import os
import sys

RUNTIME_PYTHON = os.environ.get("RUNTIME_PYTHON") or sys.executable
