"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hoard.domain.errors import HoardError, Unauthorized

MEDIA_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def unauthorized(exc: Unauthorized) -> JSONResponse:
    """401 with the challenge RFC 9110 asks for."""
    response = problem(exc.status, exc.title, exc.detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="hoard"'
    return response


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(HoardError)
    async def hoard_error(_: Request, exc: HoardError) -> JSONResponse:
        if isinstance(exc, Unauthorized):
            return unauthorized(exc)
        return problem(exc.status, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(400, "Malformed JSON", "the request body is not valid JSON")
        fields = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")}
                  for e in errors]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem(422, "Invalid input", detail, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body it cannot even decode (not UTF-8).
            return problem(400, "Malformed JSON", "the request body is not valid UTF-8 JSON")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem(exc.status_code, title, str(exc.detail))
