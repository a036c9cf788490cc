"""DIAGNOSTIC ONLY, never shipped: our server with one change applied in memory, to measure what a part of
its work costs, in the same rounds as everything else.

    python -m bench.variants CHANGE [server.py options]     # exactly `python server.py`, plus CHANGE

`no-dir-fsync`, NOT a suggestion: skip the directory fsync after linking `<job_id>.json`. Without it a
power cut can lose a transcript that was acknowledged; it runs only to show what that fsync costs, since
the limit, as the benchmark issue defines it, renames without one.
"""

from __future__ import annotations

import sys


def skip_directory_fsync() -> None:
    from notification_flow import transcripts

    transcripts.DirectorySync.after_change = lambda self: None  # type: ignore[method-assign]


CHANGES = {"no-dir-fsync": skip_directory_fsync}


def main() -> int:
    CHANGES[sys.argv[1]]()
    import server

    return server.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
