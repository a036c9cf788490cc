"""The API's error answers: ``{"code", "error", "detail"}`` with ``error`` from the documented enum."""

from __future__ import annotations

from typing import Any

# The ``error`` strings the OpenAPI description allows (ErrorResponse.error enum); nothing else is sent,
# because strict clients (e.g. the JS SDK) reject error strings outside this list.
ERROR_STRINGS = frozenset(
    {
        "Bad Request", "File Expired", "Forbidden", "Resource Locked", "Format Not Supported",
        "Internal Server Error", "Job error", "Job Expired", "Job In Progress",
        "Job is not of type transcription", "Job not found", "Job rejected",
        "Job rejected due to invalid audio", "Job rejected due to invalid text", "Malformed request",
        "Missing callback", "Missing data_file", "No language selected", "Not Implemented",
        "Permission Denied", "Requested product not available", "Transcription not ready",
        "Log file not available", "Unprocessable Entity", "Max concurrent running jobs exceeded",
    }
)


class ApiError(Exception):
    """Raised anywhere below the routes; the app turns it into the JSON error answer."""

    def __init__(self, code: int, error: str, detail: str | None = None, headers: dict[str, str] | None = None):
        assert error in ERROR_STRINGS, error
        super().__init__(f"{code} {error}: {detail}")
        self.code = code
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "error": self.error}
        if self.detail:
            body["detail"] = self.detail
        return body
