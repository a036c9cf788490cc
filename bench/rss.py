"""`python -m bench.rss OUT COMMAND...`: run COMMAND and write its peak resident memory, in KB, and the CPU
seconds it used (user and system), to OUT, on one line.

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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(sys.argv[1]).write_text(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.4f}")
    sys.exit(code)
