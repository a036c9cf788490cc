"""Test control under ``/_emulator/`` (not part of the Speechmatics API), same bearer auth as /v2.

The functions here are the single implementation: the blueprint's routes and the in-process
``Emulator`` handle both call them, so HTTP and Python callers see the same behaviour.
Errors: unknown job or held key -> 404 (KeyError), bad input -> 400 (ValueError), a job that is
not running -> 409 (NotRunning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request

from emulator.jobs import Job
from emulator.transcripts import dump_json

if TYPE_CHECKING:
    from emulator.service import Service

OUTCOMES = {"done", "rejected"}

control = Blueprint("control", __name__, url_prefix="/_emulator")


class NotRunning(RuntimeError):
    """finish() was called for a job that already ended."""


def stats(service: Service) -> dict[str, Any]:
    return {**service.traffic.stats(), "seed": service.seed}


def faults(service: Service) -> dict[str, Any]:
    return {**service.faults.options.faults(), "seed": service.seed}


def set_faults(service: Service, changes: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise ValueError("expected a JSON object of fault options")
    service.faults.update(changes)
    return faults(service)


def job(service: Service, job_id: str) -> dict[str, Any]:
    """The job as GET /v2/jobs/{id} shows it; expired jobs too (status "expired") instead of a 410."""
    service.expire_if_due(job_id)
    return service.jobs.read(job_id, Job.details)


def finish(service: Service, job_id: str, outcome: str | None = None) -> dict[str, Any]:
    """End a running job now; ``outcome`` None keeps its natural outcome. Notifications fire as usual."""
    if outcome is not None and outcome not in OUTCOMES:
        raise ValueError(f"outcome must be 'done' or 'rejected', got {outcome!r}")
    status = service.jobs.read(job_id, lambda current: current.status)
    if not service.complete(job_id, outcome):
        raise NotRunning(f"job {job_id} is not running (status {status})")
    return job(service, job_id)


def expire(service: Service, job_id: str) -> dict[str, Any]:
    service.expire(job_id)
    return job(service, job_id)


def deliver(service: Service, key: str) -> dict[str, Any]:
    return {"outcome": service.notifier.deliver(key)}


def duplicate(service: Service, key: str) -> dict[str, Any]:
    return {"outcome": service.notifier.deliver(key, keep=True)}


def drop(service: Service, key: str) -> dict[str, Any]:
    service.notifier.drop(key)
    return {"dropped": key}


def transcript_bytes(service: Service, job_id: str) -> bytes:
    """The exact json-v2 bytes GET /v2/jobs/{id}/transcript serves; KeyError unless the job is done."""
    document = service.jobs.read(job_id, lambda current: current.transcript)
    if document is None:
        raise KeyError(f"job {job_id} has no transcript")
    return dump_json(document)


def _service() -> Service:
    return current_app.extensions["emulator"]


def _error(code: int, message: str) -> tuple[Response, int]:
    return jsonify({"code": code, "error": message}), code


@control.errorhandler(KeyError)
def _not_found(error: KeyError) -> tuple[Response, int]:
    return _error(404, f"not found: {error.args[0] if error.args else error}")


@control.errorhandler(ValueError)
def _bad_request(error: ValueError) -> tuple[Response, int]:
    return _error(400, str(error))


@control.errorhandler(NotRunning)
def _conflict(error: NotRunning) -> tuple[Response, int]:
    return _error(409, str(error))


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@control.get("/stats")
def stats_route() -> Response:
    return jsonify(stats(_service()))


@control.get("/deliveries")
def deliveries_route() -> Response:
    return jsonify({"deliveries": _service().notifier.deliveries()})


@control.get("/faults")
def faults_route() -> Response:
    return jsonify(faults(_service()))


@control.put("/faults")
def set_faults_route() -> Response:
    body = request.get_json(silent=True)
    if body is None:
        raise ValueError("expected a JSON object of fault options")
    return jsonify(set_faults(_service(), body))


@control.get("/held")
def held_route() -> Response:
    return jsonify({"held": _service().notifier.held()})


@control.post("/held/<key>/deliver")
def deliver_route(key: str) -> Response:
    return jsonify(deliver(_service(), key))


@control.post("/held/<key>/duplicate")
def duplicate_route(key: str) -> Response:
    return jsonify(duplicate(_service(), key))


@control.post("/held/<key>/drop")
def drop_route(key: str) -> Response:
    return jsonify(drop(_service(), key))


@control.post("/jobs/<job_id>/finish")
def finish_route(job_id: str) -> Response:
    return jsonify({"job": finish(_service(), job_id, _json_body().get("outcome"))})


@control.post("/jobs/<job_id>/expire")
def expire_route(job_id: str) -> Response:
    return jsonify({"job": expire(_service(), job_id)})
