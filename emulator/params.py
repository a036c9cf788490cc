"""Query parameters checked like the service's generated (go-swagger) API does: a value of the wrong
type or outside its range or enum is refused with 422, as the documented
``{"code":422,"error":...,"detail":"limit in query must be of type int64"}`` shows. Unknown
parameters (``sm-sdk``, ``sm-app``, ...) are ignored.
"""

from __future__ import annotations

from flask import request

from emulator.errors import ApiError

BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _invalid(detail: str) -> ApiError:
    return ApiError(422, "Unprocessable Entity", detail)


def boolean(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw.strip().lower() not in BOOLEANS:
        raise _invalid(f"{name} in query must be of type bool: {raw!r}")
    return BOOLEANS[raw.strip().lower()]


def integer(name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"{name} in query must be of type int64: {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _invalid(f"{name} in query must be between {minimum} and {maximum}")
    return value


def choice(name: str, allowed: set[str], default: str) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        raise _invalid(f"{name} in query should be one of {', '.join(sorted(allowed))}")
    return value
