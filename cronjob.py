"""Reconcile every job whose notification never arrived: ask Speechmatics, fetch what is done, record the rest.

Run it from cron or a systemd timer (one pass, the default) or as a service (`--loop SECONDS`). Each pass
leases the jobs it works on, so two overlapping passes never do the same job twice, and a pass that dies
just lets its leases expire. It learns statuses from `GET /v2/jobs` pages where that is cheaper than one
call per job, stays under Speechmatics' 50 reads per second, and one failing job never stops the pass.
`run_pass` below is a pass step by step; the decisions of each step live in notification_flow/reconcile.py.

    python cronjob.py            # jobs quiet for longer than the grace period
    python cronjob.py --all      # every unfinished job, now
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections import Counter

from notification_flow import handoff
from notification_flow.api import ApiError, SpeechmaticsAPI, Unauthorized
from notification_flow.cli import (
    EXIT_BAD_SETTINGS,
    EXIT_UNAVAILABLE,
    OneLineParser,
    exit_on_bad_settings,
    number_in,
    setup_logging,
)
from notification_flow.jobs import StoreUnavailable, open_store
from notification_flow.lifecycle import ReconcileOutcome as Outcome
from notification_flow.logs import emit
from notification_flow.passes import pass_counts, record_pass
from notification_flow.reconcile import ReconcilePolicy, Reconciler
from notification_flow.retention import Retention, followers
from notification_flow.settings import add_arguments, load_settings
from notification_flow.transcripts import open_transcripts

DEFAULTS = ReconcilePolicy()


def summary_line(summary: Counter[str]) -> str:
    """`checked 2, recovered 2, repaired 0, still running 0, failed 0`, and any other outcome that happened."""
    counts = pass_counts(summary)
    others = (Outcome.REJECTED, Outcome.EXPIRED, Outcome.DELETED, Outcome.SUBMIT_FAILED)
    return (f"checked {counts['checked']}, recovered {counts['recovered']}, repaired {counts['repaired']}, "
            f"still running {counts['still_running']}, failed {counts['failed']}"
            + "".join(f", {name} {summary[name]}" for name in others if summary[name]))


def run_pass(reconciler: Reconciler, retention: Retention | None = None) -> Counter[str]:
    """One pass: claim the quiet jobs, ask the API about them, fetch and publish what is done, mark each
    job's new state; then fetch again the transcripts of done jobs whose file went missing."""
    with reconciler.one_pass():  # a failure cuts the pass short (reconciler.cut_short), and leases are released
        reconciler.api.check_access()  # one authenticated read, so a broken key shows even with nothing open
        while jobs := reconciler.claim_quiet_jobs():  # leased: an overlapping pass leaves them alone
            now = reconciler.ask_api(jobs)  # a listing where that is cheaper than asking for each job
            reconciler.settle(jobs, now)  # each: fetch and publish if done, mark its state
        reconciler.repair_missing_transcripts()  # done jobs whose file is missing: fetched again
        if retention:  # deletions at Speechmatics left pending, transcripts past KEEP_TRANSCRIPTS_DAYS
            reconciler.summary.update(retention.run(reconciler.store, reconciler.api, reconciler.transcripts))
        reconciler.transcripts.remove_leftovers()  # spool files of a killed worker
    return reconciler.summary


def exit_code(reconciler: Reconciler) -> int:
    """2 if Speechmatics refused the API key (a setting), 75 if the API, the database or the transcript
    storage could not be used (try again), 1 if some job failed or a defect cut the pass short, else 0."""
    if isinstance(reconciler.cut_short, Unauthorized):
        return EXIT_BAD_SETTINGS
    if isinstance(reconciler.cut_short, ApiError | StoreUnavailable | OSError):
        return EXIT_UNAVAILABLE
    return 1 if reconciler.summary[Outcome.FAILED] else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Exit codes: 0 nothing failed (or stopped by SIGTERM/SIGINT), 1 some job could not "
                           "be reconciled (it is retried next pass), 2 bad settings or arguments, or the API "
                           "refused the key, 75 the API, the database or the transcript storage could not be used "
                           "(try again).")
    parser.add_argument("--grace", type=number_in(float, 0), default=DEFAULTS.grace_seconds,
                        help=f"leave jobs alone until they have been quiet this many seconds (default: "
                        f"{DEFAULTS.grace_seconds:g}, a little over Speechmatics' notification retries)")
    parser.add_argument("--all", action="store_true", help="ignore the grace period")
    parser.add_argument("--loop", type=number_in(float, 0.001), metavar="SECONDS",
                        help="run a pass every SECONDS until stopped (SIGTERM or SIGINT: stops cleanly, exit 0)")
    parser.add_argument("--concurrency", type=number_in(int, 1, 64), default=DEFAULTS.concurrency,
                        help=f"jobs worked on at once (default: {DEFAULTS.concurrency})")
    handoff.add_redeliver_arguments(parser)
    add_arguments(parser, "api_key", "batch_url", "api_timeout", "database_url", "transcripts_dir", "transcripts_url",
                  "delete_after_store", "keep_transcripts_days", "transcripts_mode", *handoff.SETTING_FIELDS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.redeliver is not None or args.since:  # hand-off events sent again, and nothing else
        return handoff.redeliver(args)
    with exit_on_bad_settings():
        settings = load_settings(overrides=vars(args), required=("api_key",))
        transcripts = open_transcripts(settings, check=True)  # refused before anything is written
        store = open_store(settings.database_url,
                           followers=(*followers(settings), *handoff.followers(settings)))
        transcripts.ensure_directories()
    policy = ReconcilePolicy(grace_seconds=0 if args.all else args.grace, concurrency=args.concurrency,
                             api_timeout_seconds=settings.api_timeout)
    with SpeechmaticsAPI(settings.api_key or "", settings.batch_url, timeout=settings.api_timeout) as api:
        reconciler = Reconciler(store, api, transcripts, policy)
        stop_on_signals(reconciler)
        while True:
            started = time.monotonic()
            summary = run_pass(reconciler, Retention(settings.keep_transcripts_days))
            handoff.deliver_pass(settings, store.database, reconciler.stopping)  # every event due, whoever recorded it
            with contextlib.suppress(StoreUnavailable):  # the server's metrics then show an older pass
                record_pass(store, summary, time.monotonic() - started, complete=reconciler.cut_short is None)
            emit(None, summary_line(summary), event="pass", **pass_counts(summary))
            if not args.loop or reconciler.stopping.is_set():
                return exit_code(reconciler)
            reconciler.stopping.wait(args.loop)
            if reconciler.stopping.is_set():
                return 0


def stop_on_signals(reconciler: Reconciler) -> None:
    """SIGTERM (systemd, docker, kill) and SIGINT (Ctrl-C) stop the pass cleanly: the jobs in hand are
    finished, the rest abandoned and their leases released, so the next pass need not wait 10 minutes."""
    def stop(signum: int, frame: object) -> None:
        reconciler.stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


if __name__ == "__main__":
    sys.exit(main())
