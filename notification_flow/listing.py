"""`client.py --list`: the recorded jobs, newest first, as a table for people or JSON lines for programs.

It answers at once on any history: it reads the newest `--limit` jobs (50 unless told) through an index,
in batches, and prints each as it comes, so neither time nor memory grows with the jobs kept. Whether more
were left out is learnt by reading one row past the limit, never by counting them all: a count would
cost a scan of the history, which is exactly what this must not do.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from notification_flow.jobs import Job, JobStore
from notification_flow.lifecycle import State

DEFAULT_LIMIT = 50
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", help="show the recorded jobs, newest first, instead of "
                        "submitting")
    parser.add_argument("--json", action="store_true", help="with --list: one JSON object per line")
    parser.add_argument("--status", choices=[state.value for state in State], help="with --list: only this status")
    parser.add_argument("--since", type=parse_since, metavar="WHEN", help="with --list: only jobs created since "
                        "WHEN, a UTC date or time (2026-11-22, 2026-11-22T12:00) or a duration ago (90m, 2h, 7d)")
    parser.add_argument("--limit", type=parse_limit, default=DEFAULT_LIMIT, metavar="N",
                        help=f"with --list: at most N jobs (default: {DEFAULT_LIMIT}; 0 for all)")


def parse_since(text: str) -> tuple[str, float]:
    """("ago", seconds) for a duration, to be taken from the database's clock; ("at", epoch) for a moment."""
    if match := DURATION.fullmatch(text.strip()):
        return "ago", float(match[1]) * UNIT_SECONDS[match[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a date or time (2026-11-22T12:00) nor a duration "
                                         "(90m, 2h, 7d)") from None
    return "at", (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def since_moment(store: JobStore, since: tuple[str, float] | None) -> float | None:
    """A parsed `--since` as epoch seconds by the database's clock, as rows and events record times."""
    if since is None:
        return None
    kind, value = since
    return store.now() - value if kind == "ago" else value


def parse_limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number, 0 for all")
    return int(text)


# Each job's hand-off state, asked for a batch of references at a time (handoff.states_of), or nothing.
HandoffStates = Callable[[JobStore, list[str]], dict[str, str]]


def show_jobs(store: JobStore, args: argparse.Namespace, out: TextIO = sys.stdout,
              handoff_states: HandoffStates | None = None) -> None:
    limit = args.limit or None
    jobs = store.newest_jobs(State(args.status) if args.status else None, since_moment(store, args.since),
                             None if limit is None else limit + 1)  # one more: were any left out?
    if not args.json:
        print(f"{'job_id':<12} {'reference':<32} {'status':<13} {'created':<19} {'handoff':<9} transcript / error",
              file=out)
    shown = 0
    for batch in batches(jobs, 100):
        states = handoff_states(store, [job.reference for job in batch]) if handoff_states else {}
        for job in batch:
            if limit is not None and shown == limit:
                note = (f"more jobs not shown: only the newest {limit}; --limit 0 for all, or --status/--since to "
                        "narrow")
                print(note, file=sys.stderr if args.json else out)
                return
            shown += 1
            handoff = states.get(job.reference)
            if args.json:
                print(json.dumps({**job_summary(job), "handoff": handoff}), file=out)
            else:
                print(f"{job.job_id or '-':<12} {job.reference:<32} {job.status:<13} {timestamp(job.created_at):<19} "
                      f"{handoff or '-':<9} {job.transcript or job.error or ''}{deleted_remotely(job)}{notice_of(job)}",
                      file=out)


def batches(jobs: Iterator[Job], size: int) -> Iterator[list[Job]]:
    while batch := list(itertools.islice(jobs, size)):
        yield batch


def job_summary(job: Job) -> dict[str, Any]:
    return {"job_id": job.job_id, "reference": job.reference, "audio": job.audio, "status": job.status,
            "transcript": job.transcript, "error": job.error, "created_at": timestamp(job.created_at),
            "updated_at": timestamp(job.updated_at),
            "deleted_at_speechmatics": timestamp(job.remote_deleted_at) if job.remote_deleted_at else None,
            "notice": job.notice}


def deleted_remotely(job: Job) -> str:
    """What the table adds for a job deleted at Speechmatics on our behalf (DELETE_AFTER_STORE, --forget)."""
    return f" (deleted at Speechmatics {timestamp(job.remote_deleted_at)})" if job.remote_deleted_at else ""


def notice_of(job: Job) -> str:
    """What the table adds for a job with a notice: a failed notification or add-on (notices.py)."""
    return f"  ! {job.notice}" if job.notice else ""


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
