"""`make soak`: a thousand jobs through every fault at once, with real processes killed at random moments.

Run it from the repository root:

    python -m tests.soak --jobs 1000 --seed 7                           # sqlite, one server
    python -m tests.soak --jobs 1000 --database postgresql --servers 2  # a fresh schema, dropped afterwards
    python -m tests.soak --jobs 1000 --database postgresql --servers 2 --storage s3  # transcripts in SeaweedFS
    python -m tests.soak --jobs 1000 --delete-after-store              # every stored job deleted at the API

Exit code 0 when every checked counter is zero, 1 otherwise, 2 for bad arguments or no PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.integration.support import POSTGRES_URL
from tests.soak.options import SoakOptions
from tests.soak.phases import run_soak
from tests.soak.prepare import fresh_database, postgres_problem


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 nothing lost, 1 some check failed, 2 bad arguments.")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to submit (default: 1000)")
    parser.add_argument("--seed", type=int, help="seed of every random choice (default: a random one, printed)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--servers", type=int, help="server.py processes (default: 1 on sqlite, 2 on postgresql)")
    parser.add_argument("--storage", choices=("dir", "s3"), default="dir", help="transcripts in one shared "
                        "directory, or in a bucket of a real S3-compatible store (SeaweedFS, started on loopback) "
                        "through TRANSCRIPTS_URL (default: %(default)s)")
    parser.add_argument("--delete-after-store", action="store_true", help="run every process with "
                        "DELETE_AFTER_STORE=1: each job stored is then deleted at the API, and checked to be")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="PostgreSQL server for --database postgresql; a fresh schema is created in it and "
                        "dropped afterwards (default: $TEST_DATABASE_URL or %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep everything (logs, database, transcripts) here "
                        "(default: a temporary directory, removed unless the run fails)")
    args = parser.parse_args(argv)
    if args.jobs < 2:
        parser.error("--jobs must be at least 2 (one of them goes through the killed client)")
    if args.servers is None:
        args.servers = 2 if args.database == "postgresql" else 1
    if args.servers < 1:
        parser.error("--servers must be at least 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = SoakOptions(jobs=args.jobs, seed=args.seed, servers=args.servers, storage=args.storage,
                          delete_after_store=args.delete_after_store)
    problem = postgres_problem(args.postgres_url) if args.database == "postgresql" else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    deleting = ", DELETE_AFTER_STORE=1" if args.delete_after_store else ""
    print(f"soak: seed {args.seed}, {args.jobs} jobs, {args.database}, {args.servers} server(s), transcripts in "
          f"{args.storage}{deleting}, work directory {workdir}", flush=True)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with fresh_database(args.database, workdir, args.postgres_url) as database_url:
        result = run_soak(options, database_url, workdir, args.database, say)
    print(result.report(), flush=True)
    if result.ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not result.ok:
        print(f"logs, database and transcripts kept in {workdir}", flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
