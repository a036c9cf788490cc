"""`make bench`: the integration measured against a lean durable handler, into the pages in docs/ (the method
and the goals are prose in docs/benchmarks.md). `python -m bench` runs every benchmark, then the pages:

- loadgen.py     the load generator, in a process of its own, and its bodies scaled from a real transcript
- targets.py     the servers under test (ours, the lean handler of lean_app.py), their job rows, the rounds
- ingest.py      webhook ingest, memory, into S3 against local disk, and the hand-off
- scripts.py     cronjob.py and client.py at the API's limits, and against history size
- report.py      the results pages, and the history's figure
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
# What the scripts and servers run with: .venv's python (requirements.txt only, as a server's) where there is one.
_VENV = ROOT / ".venv" / "bin" / "python"
RUNTIME_PYTHON = os.path.abspath(os.environ.get("RUNTIME_PYTHON") or (str(_VENV) if _VENV.exists() else sys.executable))
