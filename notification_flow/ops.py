"""The server's operational endpoints: /healthz, /readyz and /metrics, and the counting around notifications.

/healthz says only that the process answers (a liveness probe must not restart a server because its database
is away: it answers 503 to Speechmatics meanwhile, and recovers by itself). /readyz says whether this server can
do its work now: the database answers and transcript storage takes a file; a load balancer sends
notifications only to servers that are ready. /metrics is Prometheus' text format; with METRICS_TOKEN set it
wants that bearer token, compared in constant time like the webhook's.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import time

from flask import Flask, Response, g, request

from notification_flow.db import StoreUnavailable
from notification_flow.metrics import Metrics
from notification_flow.settings import Settings

log = logging.getLogger("server")


def outcome_response(outcome: str) -> Response:
    """The JSON answer `{"outcome": ...}`, byte for byte what `jsonify(outcome=...)` writes. Every answer is
    one of a few bodies, so each is encoded once: encoding it anew cost 1% of a notification's CPU."""
    return Response(_outcome_body(str(outcome)), mimetype="application/json")


@functools.lru_cache(maxsize=256)  # the outcomes, HTTP error names and a few more: a closed set
def _outcome_body(outcome: str) -> bytes:
    return json.dumps({"outcome": outcome}, separators=(",", ":")).encode() + b"\n"


def register(app: Flask, receiver: object, settings: Settings) -> Metrics:
    """Add the endpoints to `app`, and count what `receiver` (server.Receiver) does: its answers, its writes,
    its API calls."""
    store, transcripts = receiver.store, receiver.transcripts  # type: ignore[attr-defined]
    metrics = Metrics(store)
    transcripts.publish = metrics.counting_writes(transcripts.publish)
    api = getattr(receiver, "api", None)
    if api is not None:
        api.http.event_hooks = {**api.http.event_hooks, "response": [metrics.count_api_answer]}
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    def healthz() -> tuple[Response, int]:
        return outcome_response("ok"), 200

    def readyz() -> tuple[Response, int]:
        try:
            store.ping()
        except StoreUnavailable:
            return outcome_response("database unavailable"), 503
        try:
            transcripts.check_ready()  # the directory takes a file; with S3, the spool does and the bucket answers
        except OSError as error:
            log.warning("not ready: transcript storage: %s", error)
            return outcome_response("transcript storage not writable"), 503
        return outcome_response("ok"), 200

    def scrape() -> tuple[Response, int] | Response:
        presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if expected is not None and not hmac.compare_digest(presented, expected):
            return outcome_response("unauthenticated"), 401
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    def started() -> None:
        g.started = time.monotonic()

    def answered(response: Response) -> Response:
        """Every answer of the webhook, the ones its error handlers gave included."""
        if request.endpoint == "notification":
            metrics.observe_notification(g.get("outcome", "-"), response.status_code,
                                         time.monotonic() - g.get("started", 0.0))
        return response

    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/readyz", "readyz", readyz)
    app.add_url_rule("/metrics", "metrics", scrape)
    app.before_request(started)
    app.after_request(answered)
    return metrics


def warn_if_exposed(host: str) -> None:
    """Said once at start-up: a server on a non-loopback address is meant to sit behind a TLS proxy."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("listening on %s: expecting a TLS reverse proxy in front (see deploy/nginx); set "
                    "TRUSTED_PROXIES to the number of proxies", host)
