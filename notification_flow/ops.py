"""The server's operational endpoints, /healthz, /readyz and /metrics, as one Flask Blueprint.

/healthz says only that the process answers (a liveness probe must not restart a server because its database
is away: it answers 503 to Speechmatics meanwhile, and recovers by itself). /readyz says whether this server can
do its work now: the database answers and transcript storage takes a transcript; a load balancer sends
notifications only to servers that are ready. /metrics is Prometheus' text format; with METRICS_TOKEN set it
wants that bearer token, compared in constant time like the webhook's.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, jsonify, request

from notification_flow.db import StoreUnavailable
from notification_flow.jobs import JobStore
from notification_flow.metrics import Metrics
from notification_flow.settings import Settings
from notification_flow.transcripts import TranscriptStore

log = logging.getLogger("server")


def endpoints(store: JobStore, transcripts: TranscriptStore, metrics: Metrics, settings: Settings) -> Blueprint:
    """The three endpoints, for `app.register_blueprint`."""
    blueprint = Blueprint("ops", __name__)
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    @blueprint.get("/healthz")
    def healthz() -> Response:
        return jsonify(outcome="ok")

    @blueprint.get("/readyz")
    def readyz() -> tuple[Response, int]:
        try:
            store.now()  # the database answers
        except StoreUnavailable:
            return jsonify(outcome="database unavailable"), 503
        try:
            transcripts.check_ready()  # what publishing does; with S3, the spool does and the bucket answers
        except OSError as error:
            log.warning("not ready: transcript storage: %s", error)
            return jsonify(outcome="transcript storage not writable"), 503
        return jsonify(outcome="ok"), 200

    @blueprint.get("/metrics")
    def scrape() -> Response | tuple[Response, int]:
        presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if expected is not None and not hmac.compare_digest(presented, expected):
            return jsonify(outcome="unauthenticated"), 401
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    return blueprint
