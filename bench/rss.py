"""`python -m bench.rss OUT COMMAND...`: run COMMAND and write its peak resident memory, in KB, to OUT.

A small process of its own starts the command, so the kernel's figure (RUSAGE_CHILDREN's maxrss) is the
command's: a child forked straight from the benchmark would inherit the benchmark's larger RSS as its
starting high-water mark, and report that instead.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    code = subprocess.call(sys.argv[2:])
    Path(sys.argv[1]).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    sys.exit(code)
