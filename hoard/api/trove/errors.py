"""Trove's error bodies (``{"itemNotFound": {"code": 404, "message": ...}}``) in place
of /v2's problem+json, so Trove clients show their own error messages."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hoard.domain.errors import (
    Conflict,
    Forbidden,
    HoardError,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    Unauthorized,
)


class NotImplementedYet(HoardError):
    status = 501
    title = "Not implemented"


# Hoard's error -> (Trove's key, status). Trove refuses a change in the wrong state
# with 422 unprocessableEntity, and an exceeded quota with 413 overLimit.
KINDS: dict[type[HoardError], tuple[str, int]] = {
    InvalidInput: ("badRequest", 400),
    NotFound: ("itemNotFound", 404),
    Conflict: ("unprocessableEntity", 422),
    QuotaExceeded: ("overLimit", 413),
    Unauthorized: ("unauthorized", 401),
    Forbidden: ("forbidden", 403),
    NotImplementedYet: ("notImplemented", 501),
}
_BY_STATUS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
              405: "badMethod", 413: "overLimit", 422: "unprocessableEntity",
              501: "notImplemented"}


def fault(key: str, code: int, message: str) -> JSONResponse:
    """One Trove fault body."""
    return JSONResponse({key: {"code": code, "message": message}}, status_code=code)


def for_error(exc: HoardError) -> JSONResponse:
    key, code = next(((k, c) for kind, (k, c) in KINDS.items() if isinstance(exc, kind)),
                     ("computeFault", 500))
    return fault(key, code, exc.detail)


def install(app: FastAPI) -> None:
    """Trove's bodies for every error the Trove sub-application raises."""

    @app.exception_handler(HoardError)
    async def _hoard(_: Request, exc: HoardError) -> JSONResponse:
        return for_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return fault("badRequest", 400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        key = _BY_STATUS.get(exc.status_code, "computeFault")
        return fault(key, exc.status_code, str(exc.detail))
