"""`client.py --check`: "why didn't my webhook arrive?", answered in one line.

It submits the bundled sample the way every job is submitted (a row first, then the job, with this job's own
token), then watches two records until one of them settles it: the job's row, which only a stored transcript
makes `done`, and the job's `errors` at Speechmatics, where each failed notification attempt is appended and
the last is followed by "Sending notification failed". Our server records nothing per refused notification (a
refusal writes nothing, by design), so what it answered is read from the status code Speechmatics recorded
("Response status: 401"), and the line says so. Exit code 0 only when the notification stored the transcript.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

from notification_flow.api import ApiError, SpeechmaticsAPI
from notification_flow.jobs import JobStore
from notification_flow.lifecycle import State
from notification_flow.notices import GAVE_UP, failed_notifications, messages
from notification_flow.redaction import redact_urls_in
from notification_flow.settings import Settings

EXIT_STORED, EXIT_NOT_STORED = 0, 1
RESPONSE_STATUS = re.compile(r"Response status: (\d{3})")
# What our server answers each status for (server.py, auth.py): the outcome a refusal most likely was.
OUR_REFUSALS = {
    400: "invalid job id, status or body",
    401: "unauthenticated: the job's token was not accepted; is WEBHOOK_SECRET the same for client.py and server.py?",
    403: "token of another job, or an address not allowed (ALLOWED_REGIONS, TRUSTED_PROXIES)",
    404: "nothing answers at that path: check the path of WEBHOOK_URL (WEBHOOK_PATH on the server)",
    405: "that path does not take POST: check the path of WEBHOOK_URL (WEBHOOK_PATH on the server)",
    413: "body too large (MAX_NOTIFICATION_MB)",
    503: "temporarily unavailable: its database or transcript storage could not be used (see its log)",
}
# client.py's own submission of the sample: (submitted, message, the job id if a job was made).
Submit = Callable[[SpeechmaticsAPI], tuple[bool, str, str | None]]


def run_check(settings: Settings, store: JobStore, args: argparse.Namespace, submit: Submit) -> int:
    """Submit, watch, and print the one line; the exit code."""
    with SpeechmaticsAPI(settings.api_key or "", settings.batch_url, timeout=settings.api_timeout) as api:
        try:
            _, message, job_id = submit(api)
        except ApiError as error:  # the key refused
            message, job_id = str(error), None
        if job_id is None:
            print(f"check: not submitted: {message}")
            return EXIT_NOT_STORED
        code, line = watch(store, api, job_id, time.monotonic() + args.check_timeout)
    print(f"check: job {job_id} (notifying {redact_urls_in(settings.webhook_url)}): {line}")
    return code


def watch(store: JobStore, api: SpeechmaticsAPI, job_id: str, deadline: float) -> tuple[int, str]:
    """Poll the row and the job until they settle the question, or the deadline passes."""
    errors: list[str] = []
    status = "running"
    while True:
        job = store.find(job_id)
        if job is not None and job.status is State.DONE:
            if failed_notifications(errors):
                return EXIT_NOT_STORED, (f"transcript stored at {job.transcript}, but not by the notification "
                                         f"(cronjob.py fetched it): {verdict(errors)}")
            return EXIT_STORED, f"delivered and stored: {job.transcript}"
        if job is not None and job.status is State.REJECTED:
            return EXIT_NOT_STORED, f"Speechmatics rejected the job ({job.error}); its notification arrived"
        try:
            remote = api.job(job_id)
            status, errors = remote.get("status", status), messages(remote)
        except ApiError:
            pass  # the row may still settle it; the deadline bounds the wait
        if GAVE_UP in errors:
            return EXIT_NOT_STORED, verdict(errors)
        if time.monotonic() > deadline:
            if failed_notifications(errors):
                return EXIT_NOT_STORED, f"{verdict(errors)} (Speechmatics is still retrying)"
            return EXIT_NOT_STORED, (f"no answer in time: the job is {status} at Speechmatics and has recorded no "
                                     "failed notification yet; try a longer --check-timeout")
        time.sleep(1.0)


def verdict(errors: list[str]) -> str:
    """What the last failed attempt says: refused by our server (its status code), or never delivered."""
    failures = failed_notifications(errors)
    last = redact_urls_in(failures[-1]) if failures else GAVE_UP
    answered = RESPONSE_STATUS.search(last or "")
    if answered:
        code = int(answered[1])
        ours = OUR_REFUSALS.get(code, "an answer that is not 2xx")
        return (f"delivered but refused by our server: HTTP {code}, {ours} (from the status code Speechmatics "
                f"recorded, after {len(failures)} attempt(s))")
    return f"never delivered: Speechmatics recorded \"{last}\" after {len(failures)} attempt(s)"
