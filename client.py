"""Submit audio files to Speechmatics with a notification URL, recording each job in the database.

The row is committed *before* the API call, under a fresh local reference that also travels with the job
(`tracking.reference`). So a crash at any line leaves a row that cronjob.py can resolve, and a notification
that arrives before we have recorded the job id can still be matched to us.

    python client.py                      # the bundled sample, as in Speechmatics' own example
    python client.py calls/*.wav --language de
    python client.py --list               # what happened to the newest jobs (--status, --since, --limit)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from notification_flow import handoff
from notification_flow.api import HEARTBEAT_SECONDS, AmbiguousSubmission, ApiError, SpeechmaticsAPI, Unauthorized
from notification_flow.auth import auth_header
from notification_flow.check import run_check
from notification_flow.cli import OneLineParser, exit_on_bad_settings, read_json_object
from notification_flow.db import database_exists, describe_database
from notification_flow.formats import add_format_arguments, with_formats
from notification_flow.jobs import JobStore, StoreUnavailable, open_store
from notification_flow.listing import add_list_arguments, show_jobs
from notification_flow.logs import error_line
from notification_flow.retention import add_forget_argument, forget
from notification_flow.settings import Settings, add_arguments, load_settings
from notification_flow.sources import Source, add_source_arguments, config_problem, sources_of

SAMPLE_AUDIO = Path(__file__).with_name("example.wav")
EXIT_NOT_ALL_SUBMITTED = 1
EXIT_NO_DATABASE = 2


class RowClosed(Exception):
    """cronjob.py closed our row (it judged us dead): creating the job now would make an orphan."""


def job_config(settings: Settings, reference: str, args: argparse.Namespace) -> dict[str, Any]:
    """The job config: the user's extras, our language options, our notification and our reference."""
    job: dict[str, Any] = copy.deepcopy(args.extra_config)
    job["type"] = "transcription"
    transcription = job.setdefault("transcription_config", {})
    transcription["language"] = args.language or transcription.get("language") or "en"
    for option in ("model", "operating_point"):
        if getattr(args, option):
            transcription[option] = getattr(args, option)
    job.setdefault("notification_config", []).append({
        "url": settings.webhook_url,
        "contents": ["transcript"],
        "auth_headers": [auth_header(settings.webhook_secret or "", reference)],  # this job's token, never the secret
    })
    job.setdefault("tracking", {})["reference"] = reference
    return with_formats(job, args.formats)


def submit(source: Source, settings: Settings, store: JobStore, api: SpeechmaticsAPI, args: argparse.Namespace,
           note: str = "") -> tuple[bool, str, str | None]:
    """Submit one file or URL (`note` goes on the row after its name); the answer is (submitted, message for the
    user, the job id if a job was made)."""
    problem = source.problem()
    if problem:
        return False, problem, None  # nothing recorded for it
    reference = uuid.uuid4().hex
    try:
        store.add_submission(reference, f"{source}{note}", args.formats)  # 1. intent, before anything is sent
    except StoreUnavailable as error:
        return False, f"{source}: not submitted: the database is unavailable ({error})", None
    last_heartbeat = time.monotonic()

    def heartbeat() -> None:  # keeps cronjob.py from judging this row dead while we upload or wait
        nonlocal last_heartbeat
        try:
            if not store.heartbeat(reference):
                raise RowClosed(f"{source}: row {reference} was closed before the upload finished")
            last_heartbeat = time.monotonic()
        except StoreUnavailable:  # a moment's trouble is no reason to stop; a long one is, since cronjob.py
            if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:  # can no longer see we are alive
                raise RowClosed(f"{source}: the database has been unavailable for too long") from None

    try:  # 2. the job, carrying our reference and notification URL
        job_id = api.submit(source.path, source.add_to(job_config(settings, reference, args)), heartbeat)
    except RowClosed as error:
        job = store.find_by_reference(reference)  # a notification may have brought the job id already
        if job is not None and job.job_id:
            return True, f"{source}: job {job.job_id} {job.status}", job.job_id
        return False, f"{error}; not submitted", None
    except AmbiguousSubmission as error:
        return False, f"{source}: {error}; left as 'submitting' for cronjob.py to resolve", None
    except ApiError as error:  # answered, and no job was made (a database that is away leaves it to cronjob.py)
        with contextlib.suppress(StoreUnavailable):
            store.record_not_created(reference, str(error))
        if isinstance(error, Unauthorized):
            raise  # every other file would fail the same way: stop
        return False, f"{source}: not submitted: {error}", None
    try:
        job = store.record_created(reference, job_id)  # 3. its id (a fast notification may have done it already)
    except StoreUnavailable:
        return False, f"{source}: job {job_id} created, its id not recorded yet (database unavailable); cronjob.py " \
            "will find it by its reference", job_id
    if job is None:
        return False, f"{source}: job {job_id} created, but its row belongs to another job; see cronjob.py's log", None
    return True, f"{source}: job {job_id} {job.status}", job_id


def submit_all(sources: list[Source], settings: Settings, store: JobStore, args: argparse.Namespace) -> int:
    failures = 0
    with SpeechmaticsAPI(settings.api_key or "", settings.batch_url, timeout=settings.api_timeout) as api, \
            ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = pool.map(lambda source: submit(source, settings, store, api, args), sources)
        try:
            for submitted, message, _ in results:  # one line a source: what happened to it
                failures += not submitted
                print(message, file=sys.stdout if submitted else sys.stderr, flush=True)
        except Unauthorized as error:
            print(error_line(str(error)), file=sys.stderr)
            pool.shutdown(cancel_futures=True)
            return EXIT_NOT_ALL_SUBMITTED
    return EXIT_NOT_ALL_SUBMITTED if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Exit codes: 0 every file submitted, 1 some were not, 2 bad settings or arguments "
                           "(or --list with no job database), 75 the database is unavailable (try again).")
    parser.add_argument("audio", nargs="*", type=Path, help=f"audio files (default: {SAMPLE_AUDIO.name})")
    add_source_arguments(parser)
    add_format_arguments(parser)
    parser.add_argument("--language", help="language code (default: en)")
    parser.add_argument("--model", help="model, e.g. standard or enhanced")
    parser.add_argument("--operating-point", help="operating point (older name for --model)")
    parser.add_argument("--config-file", type=Path, help="JSON file merged into every job config")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel uploads (default: 4; never "
                        "more than 10 job creations per second)")
    add_list_arguments(parser)
    add_forget_argument(parser)
    add_arguments(parser, "api_key", "batch_url", "api_timeout", "webhook_url", "allow_private_webhook_url",
                  "webhook_secret", "database_url", *handoff.SETTING_FIELDS)
    args = parser.parse_args(argv)
    only_with_list = [flag for flag, used in (("--json", args.json), ("--status", args.status),
                                              ("--since", args.since)) if used]
    if only_with_list and not args.list:
        parser.error(f"{only_with_list[0]} only makes sense with --list")
    if args.list and args.audio:
        parser.error("--list shows the recorded jobs; it takes no audio files")
    if not 1 <= args.concurrency <= 10:
        parser.error("--concurrency must be between 1 and 10")
    args.extra_config = read_json_object(parser, "--config-file", args.config_file)
    problem = config_problem(args.extra_config)
    if problem:
        parser.error(f"--config-file {args.config_file}: {problem}")
    args.sources = sources_of(parser, args, SAMPLE_AUDIO)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_bad_settings():
        required = () if args.list else ("api_key",) if args.forget else ("api_key", "webhook_url", "webhook_secret")
        settings = load_settings(overrides=vars(args), required=required)
        if (args.list or args.forget) and not database_exists(settings.database_url):  # these never create one
            print(error_line(f"no job database at {describe_database(settings.database_url)} (DATABASE_URL); "
                             "nothing has been submitted with these settings"), file=sys.stderr)
            return EXIT_NO_DATABASE
        if not (args.list or args.forget) and all(source.problem() for source in args.sources):  # nothing to send
            print("\n".join(str(source.problem()) for source in args.sources), file=sys.stderr)
            return EXIT_NOT_ALL_SUBMITTED
        store = open_store(settings.database_url, followers=handoff.followers(settings))  # submit_failed: an event
    if args.list:
        show_jobs(store, args, handoff_states=handoff.states_of)
        return 0
    if args.forget:  # erasure of one job (docs/privacy.md)
        return forget(store, settings, args.forget)
    if args.check:  # the sample, to see whether its notification reaches server.py and stores the transcript
        sample = args.sources[0]
        return run_check(settings, store, args, lambda api: submit(sample, settings, store, api, args, " (--check)"))
    return submit_all(args.sources, settings, store, args)


if __name__ == "__main__":
    sys.exit(main())
