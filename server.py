"""Receive Speechmatics job notifications and store each transcript as TRANSCRIPTS_DIR/<job_id>.json.

The order of work is the whole point: authenticate, validate the id, stream the body to disk, write the
transcript file (durably, once), then mark the job done, and only then answer 2xx. Anything we cannot do
right now is a 5xx, so Speechmatics tries again; anything that is wrong with the request is a 4xx that
changes nothing. Duplicates and late notifications are answered 200 without a second write.

Run `python server.py` (gunicorn, one worker per core) or any WSGI server with `server:create_app()`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from notification_flow import ops
from notification_flow.api import ApiError, SpeechmaticsAPI, rejection_reason
from notification_flow.auth import REFUSALS, Guard
from notification_flow.cli import OneLineParser, exit_on_bad_settings, setup_logging
from notification_flow.jobs import Notification, StoreUnavailable, open_store
from notification_flow.lifecycle import NotificationOutcome as Outcome
from notification_flow.lifecycle import NotificationStatus
from notification_flow.logs import log_notification, printable
from notification_flow.payloads import NotificationBody, UnreadableBody, check_transcript, read_body, request_class
from notification_flow.retry import RetryPolicy
from notification_flow.settings import Settings, add_arguments, load_settings
from notification_flow.transcripts import BodyTooLarge, IncomingFile, InvalidJobId, NotATranscript, open_transcripts
from notification_flow.wsgi import add_server_arguments

log = logging.getLogger("server")


@dataclass(frozen=True)
class Answer:
    code: int
    outcome: Outcome
    stored: str = "-"  # the file this notification wrote, for the log


def create_app(settings: Settings | None = None) -> Flask:
    """The app; it touches no database, so a worker starts even while the database is away (then: 503)."""
    settings = (settings or load_settings()).require("webhook_secret")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_notification_bytes
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    receiver = Receiver(settings)
    app.request_class = request_class(receiver.transcripts)
    app.add_url_rule(settings.webhook_path, "notification", receiver.receive, methods=["POST", "PUT"])
    ops.register(app, receiver, settings)  # /healthz, /readyz, /metrics
    app.register_error_handler(HTTPException, lambda error: reply(error.code or 500, error.name))
    app.register_error_handler(Exception, receiver.unexpected)
    return app


def reply(code: int, outcome: str) -> tuple[Response, int]:
    g.outcome = outcome  # for the metrics (ops.py), which then need not read the answer back
    return ops.outcome_response(outcome), code


class Receiver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings.database_url, migrate_schema=False)  # connects on first use
        self.transcripts = open_transcripts(settings).ensure_directories()  # files, or objects (TRANSCRIPTS_URL)
        # One quick try: Speechmatics is waiting for our answer, and will retry the notification itself.
        self.api = (SpeechmaticsAPI(settings.api_key, settings.batch_url, timeout=10,
                                    retry=RetryPolicy(attempts=1, max_wait=0)) if settings.api_key else None)
        self.guard = Guard(settings, self.store, self.api)

    def receive(self) -> tuple[Response, int]:
        started = time.monotonic()
        job_id, status = request.args.get("id", "-")[:40], request.args.get("status", "-")[:20]
        answer = self.handle(job_id, status)
        log_notification(log, job_id=job_id, status=status, outcome=answer.outcome, code=answer.code,
                         stored=answer.stored, duration_seconds=round(time.monotonic() - started, 4),
                         remote_addr=request.remote_addr, reference=g.get("reference"))
        return reply(answer.code, answer.outcome)

    def handle(self, job_id: str, status: str) -> Answer:
        if self.guard.address_refused(request):
            return Answer(403, Outcome.ADDRESS_NOT_ALLOWED)
        reference = self.guard.authenticate(request)  # the row a per-job token names
        if reference is None:
            return Answer(401, Outcome.UNAUTHENTICATED)
        try:
            self.transcripts.location(job_id)  # a job id that can never leave the directory, or InvalidJobId
            notified = NotificationStatus(status)
            refusal = self.guard.refusal(reference, job_id)  # a token proves one job: this one, or none
        except InvalidJobId:
            return Answer(400, Outcome.INVALID_JOB_ID)
        except ValueError:
            return Answer(400, Outcome.INVALID_STATUS)
        except StoreUnavailable:
            return Answer(503, Outcome.UNAVAILABLE)
        if refusal:
            return Answer(REFUSALS[refusal], refusal)
        if (request.content_length or 0) > self.settings.max_notification_bytes:
            return Answer(413, Outcome.BODY_TOO_LARGE)
        try:
            with read_body(request, job_id, self.transcripts, self.settings.max_notification_bytes) as body:
                g.reference = reference
                if notified is NotificationStatus.SUCCESS:
                    return self.on_success(job_id, body)
                return self.on_failure(job_id, notified, body)
        except BodyTooLarge:
            return Answer(413, Outcome.BODY_TOO_LARGE)
        except UnreadableBody as error:
            log.warning("notification job=%s unreadable body: %s", job_id, printable(str(error)))
            return Answer(400, Outcome.UNREADABLE_BODY)
        except (StoreUnavailable, OSError) as error:
            log.warning("notification job=%s could not be stored now: %s", job_id, error)
            return Answer(503, Outcome.UNAVAILABLE)

    def on_success(self, job_id: str, body: NotificationBody) -> Answer:
        if body.transcript is not None:
            return self.publish(job_id, body.transcript)
        # No json-v2 in the body (txt, srt, jobinfo or nothing): fetch it, unless nothing can change the job.
        if self.is_terminal(job_id):
            return Answer(200, Outcome.DUPLICATE)
        if self.api is None:  # cronjob.py will fetch it
            return Answer(202, self.store.record_notification(job_id, Notification(NotificationStatus.SUCCESS)))
        with self.transcripts.incoming_file() as incoming:
            try:
                self.api.download_transcript(job_id, incoming)
                check_transcript(incoming, job_id)
            except (ApiError, NotATranscript) as error:
                log.warning("notification job=%s transcript fetch failed: %s", job_id, error)
                return Answer(503, Outcome.NOT_FETCHED_YET)
            return self.publish(job_id, incoming)

    def publish(self, job_id: str, transcript: IncomingFile) -> Answer:
        """Write <job_id>.json, then record the job done: in that order, so `done` always has its file. The
        file is linked only if absent, so a duplicate or late notification writes nothing."""
        written = self.transcripts.publish(job_id, transcript)
        notification = Notification(NotificationStatus.SUCCESS, self.transcripts.location(job_id))
        return Answer(200, self.store.record_notification(job_id, notification), f"{job_id}.json" if written else "-")

    def on_failure(self, job_id: str, status: NotificationStatus, body: NotificationBody) -> Answer:
        if self.is_terminal(job_id):
            return Answer(200, Outcome.DUPLICATE)
        reason = body.error or self.reason_from_api(job_id) or f"Speechmatics reported {status}"
        return Answer(200, self.store.record_notification(job_id, Notification(status, error=reason)))

    def is_terminal(self, job_id: str) -> bool:
        return (job := self.store.find(job_id)) is not None and job.is_terminal

    def reason_from_api(self, job_id: str) -> str | None:
        with contextlib.suppress(ApiError):
            return rejection_reason(self.api.job(job_id)) if self.api else None
        return None

    def unexpected(self, error: Exception) -> tuple[Response, int]:
        """Never show a stack trace; a 500 makes Speechmatics retry, and the log has the details."""
        log.exception("unexpected error handling %s %s", printable(request.method), printable(request.path))
        return reply(500, "internal error")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Exit codes: 0 stopped cleanly, 2 bad settings or arguments. gunicorn's own "
                           "options may be given in GUNICORN_CMD_ARGS; they win over these.")
    add_server_arguments(parser)
    add_arguments(parser, "webhook_secret", "webhook_secret_previous", "database_url", "transcripts_dir",
                  "transcripts_url", "webhook_path", "max_notification_mb", "allowed_regions", "trusted_proxies",
                  "api_key", "batch_url")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    with exit_on_bad_settings():
        settings = load_settings(overrides=vars(args), required=("webhook_secret",))
        transcripts = open_transcripts(settings, check=True)  # one that cannot work: refused first, one line
        open_store(settings.database_url)  # create or migrate the schema once, before any worker starts
        transcripts.ensure_directories()
    from notification_flow.metrics import multiprocess_directory
    from notification_flow.wsgi import serve  # gunicorn, only once the settings are good

    ops.warn_if_exposed(args.host)
    with multiprocess_directory():  # the workers' metric files, summed by /metrics
        serve(lambda: create_app(settings), host=args.host, port=args.port, workers=args.workers,
              threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
