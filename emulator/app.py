"""The Flask application: the documented /v2 routes, plus the hooks every API request passes through.

Order of the hooks for /v2 requests: counted in the stats, delayed by ``api_latency_ms``, bearer
auth (401), documented rate limits (429), injected 429/503/500 faults (on the routes
``api_fault_routes`` names), then the route (POST /v2/jobs
applies ``create_latency_ms`` and ``create_then_fail_fraction``, transcript downloads the truncate
and empty transcript faults). Every answer gets a ``Request-Id`` header; errors are
``{"code", "error", "detail"}`` JSON with enum strings.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from emulator import params, transcripts, usage
from emulator.control import control
from emulator.errors import ApiError
from emulator.jobs import TERMINAL, Job
from emulator.service import Service
from emulator.uploads import UploadRequest
from emulator.validation import ConfigError, parse_config

FORMATS = {"json-v2", "txt", "srt"}
HTTP_ERRORS = {400: "Bad Request", 401: "Permission Denied", 403: "Forbidden", 404: "Job not found",
               422: "Unprocessable Entity", 429: "Max concurrent running jobs exceeded",
               501: "Not Implemented"}

api = Blueprint("api", __name__, url_prefix="/v2")


def create_app(service: Service) -> Flask:
    app = Flask("emulator")
    app.request_class = UploadRequest
    app.url_map.strict_slashes = False
    app.json.sort_keys = True  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = service.options.max_upload_bytes + (1 << 20)
    app.extensions["emulator"] = service
    app.register_blueprint(api)
    app.register_blueprint(control)
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(lambda _exc: request.cleanup())
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _crash)
    return app


def _service() -> Service:
    return current_app.extensions["emulator"]


def _route() -> str:
    rule = request.url_rule.rule if request.url_rule else "<unmatched>"
    return rule.replace("<job_id>", "{id}").replace("<key>", "{key}")


def _before() -> Response | None:
    g.request_id = uuid.uuid4().hex
    service = _service()
    is_api = request.path.startswith("/v2")
    if is_api:
        service.traffic.record(request.method, _route())
        time.sleep(service.faults.options.api_latency_ms / 1000)
    if is_api or request.path.startswith("/_emulator"):
        _authenticate(service)
    if is_api:
        _limit(service)
    return None


def _authenticate(service: Service) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), service.options.api_key.encode()):
        raise ApiError(401, "Permission Denied", "A valid 'Authorization: Bearer <API key>' header is required",
                       {"WWW-Authenticate": "Bearer"})


def _limit(service: Service) -> None:
    """The documented rate limits first, then the injected 429/503/500 faults."""
    options = service.faults.options
    limits = {"get": options.rate_limit_get_per_second, "post_jobs": options.rate_limit_post_per_second}
    if not service.traffic.admit(request.method, _route(), limits):
        detail = (f"Rate limit exceeded: at most {options.rate_limit_post_per_second} job submissions and "
                  f"{options.rate_limit_get_per_second} GET requests per second")
        raise _too_many(detail, None if options.omit_retry_after else 1)
    fault = service.faults.api_fault(f"{request.method} {_route()}")
    if fault == 429:
        service.traffic.count("injected_429")
        raise _too_many("Too many requests (injected fault)",
                        None if options.omit_retry_after else options.retry_after_seconds)
    if fault == 503:
        service.traffic.count("injected_503")
        raise ApiError(503, "Internal Server Error", "Service temporarily unavailable (injected fault)")
    if fault == 500:
        service.traffic.count("injected_500")
        raise ApiError(500, "Internal Server Error", "Internal error (injected fault)")


def _too_many(detail: str, retry_after: int | None) -> ApiError:
    """429 with the only enum string about limits; ``Retry-After`` in seconds unless omitted."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return ApiError(429, "Max concurrent running jobs exceeded", detail, headers)


def _after(response: Response) -> Response:
    response.headers["Request-Id"] = g.get("request_id") or uuid.uuid4().hex
    request.drain()
    return response


def _api_error(error: ApiError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.code
    response.headers.update(error.headers)
    return response


def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    if isinstance(error, RequestEntityTooLarge):
        return _api_error(ApiError(400, "Job rejected", f"The upload is too large: {error.description}"))
    detail = f"{request.method} {request.path}: {error.description}"
    allow = {name: value for name, value in error.get_headers() if name == "Allow"}
    return _api_error(ApiError(code, HTTP_ERRORS.get(code, "Bad Request"), detail, allow))


def _crash(error: Exception) -> Response:
    current_app.logger.exception("unhandled error")
    return _api_error(ApiError(500, "Internal Server Error", f"{type(error).__name__}: {error}"))


# --- helpers -----------------------------------------------------------------------------------------


def _wait_seconds() -> float:
    """?wait=N (capped server-side like the service); without it the configured default wait."""
    options = _service().options
    wait = params.integer("wait")
    seconds = options.default_wait_seconds if wait is None else float(max(wait, 0))
    return min(seconds, options.max_wait_seconds)


def _job(job_id: str, view: Any = Job.details) -> Any:
    """Read a job after lazily applying expiry; 404 when unknown, 410 once expired."""
    service = _service()
    try:
        service.expire_if_due(job_id)
        result, status = service.jobs.read(job_id, lambda job: (view(job), job.status))
    except KeyError:
        raise ApiError(404, "Job not found", f"No job with id {job_id!r}") from None
    if status == "expired":
        raise ApiError(410, "Job Expired", "The job and its data were deleted after the retention period")
    return result


# --- routes ------------------------------------------------------------------------------------------


@api.post("/jobs")
def create_job() -> tuple[Response, int]:
    service = _service()
    wait = _wait_seconds() if "wait" in request.args else None
    fmt = params.choice("format", FORMATS, "json-v2")
    try:
        config = parse_config(request.form.get("config"))
    except ConfigError as exc:
        raise ApiError(400, "Job rejected", str(exc)) from None
    upload = request.files.get("data_file")  # reads the whole upload
    _create_latency(service)
    has_fetch = "fetch_data" in config
    if upload is not None and has_fetch:
        raise ApiError(400, "Job rejected", "Send either a data_file or config.fetch_data, not both")
    if upload is None and not has_fetch:
        raise ApiError(400, "Missing data_file", "Send a data_file part or set config.fetch_data.url")
    if upload is None:
        job_id = service.submit(config, "", None)
    else:
        data_name = PurePath(upload.filename or "data_file").name
        job_id = service.submit(config, data_name, request.adopt(upload.stream))
    if service.faults.create_then_fail(job_id):
        service.traffic.count("injected_create_then_fail")
        raise ApiError(503, "Internal Server Error", "Service temporarily unavailable (injected fault)")
    return jsonify(_submit_answer(job_id, wait, fmt)), 201


def _create_latency(service: Service) -> None:
    """``create_latency_ms``: the upload has been read; the job is created only after this pause.

    A client that gives up meanwhile is not noticed (the answer is written after the job exists),
    so its job is created anyway, as when the real API was slow and clients timed out.
    """
    seconds = service.faults.options.create_latency_ms / 1000
    if seconds and not service.jobs.pause(seconds):
        raise ApiError(503, "Internal Server Error", "The emulator is stopping")


def _submit_answer(job_id: str, wait: float | None, fmt: str) -> dict[str, Any]:
    """``{"id"}``; with ?wait= also the outcome and, when done, the transcript (synchronous mode)."""
    if wait is None:
        return {"id": job_id}
    jobs = _service().jobs
    jobs.wait_terminal(job_id, wait)
    status, document = jobs.read(job_id, lambda job: (job.status, job.transcript))
    answer: dict[str, Any] = {"id": job_id, "status": status if status in TERMINAL else "created"}
    if status == "done" and document is not None:
        answer[fmt] = document if fmt == "json-v2" else _render(document, fmt)
    return answer


@api.get("/jobs")
def list_jobs() -> Response:
    limit = params.integer("limit", minimum=1, maximum=100)
    include_deleted = params.boolean("include_deleted")
    created_before = request.args.get("created_before")
    before_ms = usage.parse_timestamp_ms(created_before) if created_before is not None else None
    service = _service()
    service.expire_due_jobs()
    return jsonify({"jobs": service.jobs.listing(before_ms, include_deleted, limit)})


@api.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    wait = _wait_seconds()
    _job(job_id)
    _service().jobs.wait_terminal(job_id, wait)
    return jsonify({"job": _job(job_id)})


@api.delete("/jobs/<job_id>")
def delete_job(job_id: str) -> Response:
    force = params.boolean("force")
    _job(job_id)
    return jsonify({"job": _service().delete(job_id, force)})


@api.get("/jobs/<job_id>/transcript")
def get_transcript(job_id: str) -> Response:
    fmt, wait = params.choice("format", FORMATS, "json-v2"), _wait_seconds()
    _job(job_id)
    _service().jobs.wait_terminal(job_id, wait)
    status, document = _job(job_id, lambda job: (job.status, job.transcript))
    if status == "running":
        raise ApiError(404, "Transcription not ready", "The job is still running")
    if status == "rejected":
        raise ApiError(404, "Job rejected", "The job was rejected; see errors in GET /v2/jobs/{id}")
    if document is None:
        raise ApiError(404, "Job not found", f"The job is {status}")
    if fmt == "json-v2":
        return _transcript(job_id, fmt, transcripts.dump_json(document), "application/json")
    return _transcript(job_id, fmt, _render(document, fmt).encode(), "text/plain")


def _transcript(job_id: str, fmt: str, body: bytes, mimetype: str) -> Response:
    """The transcript bytes, or (by the truncate/empty faults) a 200 with only part of them or nothing.

    A faulty answer is streamed without Content-Length (chunked, properly terminated), so the HTTP
    exchange is complete and valid and only the content is wrong, as behind a broken proxy.
    """
    service = _service()
    fault = service.faults.transcript_fault(job_id, fmt)
    if fault is None:
        return Response(body, mimetype=mimetype)
    service.traffic.count(f"injected_{fault}_transcript")
    part = body[: max(len(body) // 3, 1)] if fault == "truncated" else b""
    return Response(_stream(part), mimetype=mimetype)


def _stream(data: bytes) -> Iterator[bytes]:
    if data:
        yield data


def _render(document: dict[str, Any], fmt: str) -> str:
    return transcripts.render_txt(document) if fmt == "txt" else transcripts.render_srt(document)


@api.get("/jobs/<job_id>/log")
def get_log(job_id: str) -> Response:
    """Logs exist only on the Batch Appliance; SaaS answers Not Implemented, as the legacy docs say."""
    try:
        _job(job_id)
    except ApiError as exc:
        if exc.code == 404:
            raise ApiError(404, "Log file not available", exc.detail) from None
        raise
    raise ApiError(501, "Not Implemented", "Job logs are not available on the SaaS API")


@api.get("/usage")
def get_usage() -> Response:
    since, until = request.args.get("since"), request.args.get("until")
    return jsonify(usage.report(_service().jobs.collect(usage.Billed.of), since, until))
