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
from dataclasses import dataclass, replace

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from notification_flow import formats, handoff, notices, ops, retention
from notification_flow.api import ApiError, SpeechmaticsAPI, rejection_reason
from notification_flow.auth import REFUSALS, Guard
from notification_flow.cli import OneLineParser, exit_on_bad_settings, setup_logging
from notification_flow.jobs import Notification, StoreUnavailable, open_store
from notification_flow.lifecycle import NotificationOutcome as Outcome
from notification_flow.lifecycle import NotificationStatus
from notification_flow.logs import log_notification, printable
from notification_flow.metrics import Metrics
from notification_flow.payloads import NotificationBody, UnreadableBody, check_transcript, read_body, request_class
from notification_flow.retention import Deleter, delete_once_answered, followers, forgotten
from notification_flow.retry import RetryPolicy
from notification_flow.settings import Settings, add_arguments, load_settings
from notification_flow.transcripts import BodyTooLarge, IncomingFile, InvalidJobId, NotATranscript, open_transcripts
from notification_flow.wsgi import add_server_arguments, serve, stop_cleanly_until_serving

log = logging.getLogger("server")


@dataclass(frozen=True)
class Answer:
    code: int
    outcome: str  # an Outcome, or the name of an HTTP error
    stored: str = "-"  # the file this notification wrote, for the log
    reference: str | None = None  # the job's reference, for the log


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
    app.register_blueprint(ops.endpoints(receiver.store, receiver.transcripts, receiver.metrics, settings))
    app.register_error_handler(HTTPException, lambda error: (jsonify(outcome=error.name), error.code or 500))
    return app


class Receiver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings.database_url, migrate_schema=False,  # connects on first use
                                followers=(*followers(settings), *handoff.followers(settings)))
        self.courier = handoff.courier(settings, self.store.database)  # hands events on after our commit
        self.transcripts = open_transcripts(settings).ensure_directories()  # files, or objects (TRANSCRIPTS_URL)
        self.metrics = Metrics(self.store, (retention.gauges, handoff.gauges, notices.gauges))  # in one transaction
        # One quick try: Speechmatics is waiting for our answer, and will retry the notification itself.
        self.api = (SpeechmaticsAPI(settings.api_key, settings.batch_url, timeout=10,
                                    retry=RetryPolicy(attempts=1, max_wait=0)) if settings.api_key else None)
        self.guard = Guard(settings, self.store, self.api)
        self.deleter = Deleter(self.store, self.api) if settings.delete_after_store and self.api else None

    def receive(self) -> tuple[Response, int]:
        """Every notification's answer, its one log line and its count, whatever `handle` made of it."""
        started = time.monotonic()
        job_id, status = request.args.get("id", "-")[:40], request.args.get("status", "-")[:20]
        try:
            answer = self.handle(job_id, status)
        except HTTPException as error:  # werkzeug's own refusals while the body is read
            answer = Answer(error.code or 500, error.name)
        except Exception:  # never a stack trace; a 500 makes Speechmatics retry, and the log has the details
            log.exception("notification job=%s: unexpected error", printable(job_id))
            answer = Answer(500, "internal error")
        handoff.after_commit(self.courier, answer.outcome)  # an event recorded: delivered now, while we answer
        seconds = time.monotonic() - started
        self.metrics.observe_notification(answer.outcome, answer.code, seconds)
        log_notification(log, job_id=job_id, status=status, outcome=answer.outcome, code=answer.code,
                         stored=answer.stored, duration_seconds=round(seconds, 4),
                         remote_addr=request.remote_addr, reference=answer.reference)
        return delete_once_answered(self.deleter, jsonify(outcome=answer.outcome), job_id, answer.outcome), answer.code

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
                answer = (self.on_success(job_id, body) if notified is NotificationStatus.SUCCESS
                          else self.on_failure(job_id, notified, body))
                return replace(answer, reference=reference)
        except BodyTooLarge:
            return Answer(413, Outcome.BODY_TOO_LARGE)
        except UnreadableBody as error:
            log.warning("notification job=%s unreadable body: %s", job_id, printable(str(error)))
            return Answer(400, Outcome.UNREADABLE_BODY)
        except (StoreUnavailable, OSError) as error:
            log.warning("notification job=%s could not be stored now: %s", job_id, error)
            return Answer(503, Outcome.UNAVAILABLE)

    def on_success(self, job_id: str, body: NotificationBody) -> Answer:
        if body.transcript is not None and not forgotten(self.store, job_id):  # a purged job's is never kept
            return self.publish(job_id, body.transcript)
        # No json-v2 in the body (txt, srt, jobinfo or nothing): fetch it, unless nothing can change the job.
        if (job := self.store.find(job_id)) and job.is_terminal:
            return Answer(200, Outcome.DUPLICATE)
        if self.api is None:  # cronjob.py will fetch it
            return Answer(202, self.store.record_notification(job_id, Notification(NotificationStatus.SUCCESS)))
        with self.transcripts.incoming_file() as incoming:
            try:
                self.metrics.api_call("GET /jobs/{id}/transcript", self.api.download_transcript, job_id, incoming)
                check_transcript(incoming, job_id)
            except (ApiError, NotATranscript) as error:
                log.warning("notification job=%s transcript fetch failed: %s", job_id, error)
                return Answer(503, Outcome.NOT_FETCHED_YET)
            return self.publish(job_id, incoming)

    def publish(self, job_id: str, transcript: IncomingFile) -> Answer:
        """Write <job_id>.json, then record the job done: in that order, so `done` always has its file. The
        file is linked only if absent, so a duplicate or late notification writes nothing."""
        written = self.transcripts.publish(job_id, transcript)
        self.metrics.transcripts.inc(int(written))  # counts only what this call wrote
        formats.Formats(self.transcripts).keep_notified(job_id, request, transcript)  # srt and txt beside it
        notification = Notification(NotificationStatus.SUCCESS, self.transcripts.location(job_id),
                                    notice=notices.addon_notice(transcript.failed_addons))  # shown beside `done`
        return Answer(200, self.store.record_notification(job_id, notification), f"{job_id}.json" if written else "-")

    def on_failure(self, job_id: str, status: NotificationStatus, body: NotificationBody) -> Answer:
        if (job := self.store.find(job_id)) and job.is_terminal:  # nothing can change it
            return Answer(200, Outcome.DUPLICATE)
        reason = body.error or self.reason_from_api(job_id) or f"Speechmatics reported {status}"
        return Answer(200, self.store.record_notification(job_id, Notification(status, error=reason)))

    def reason_from_api(self, job_id: str) -> str | None:
        with contextlib.suppress(ApiError):
            return rejection_reason(self.metrics.api_call("GET /jobs/{id}", self.api.job, job_id)) if self.api else None
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Exit codes: 0 stopped cleanly, 2 bad settings or arguments, 75 the database or "
                           "transcript storage is unavailable (try again). gunicorn's own options may be given in "
                           "GUNICORN_CMD_ARGS; they win over these.")
    add_server_arguments(parser)
    add_arguments(parser, "webhook_secret", "webhook_secret_previous", "database_url", "transcripts_dir",
                  "transcripts_url", "webhook_path", "max_notification_mb", "allowed_regions", "trusted_proxies",
                  "api_key", "batch_url", "delete_after_store", "transcripts_mode", *handoff.SETTING_FIELDS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    stop_cleanly_until_serving()
    args = parse_args(argv)
    setup_logging()
    with exit_on_bad_settings():
        settings = load_settings(overrides=vars(args), required=("webhook_secret",))
        transcripts = open_transcripts(settings, check=True)  # one that cannot work: refused first, one line
        open_store(settings.database_url)  # create or migrate the schema once, before any worker starts
        transcripts.ensure_directories()
    serve(lambda: create_app(settings), host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
