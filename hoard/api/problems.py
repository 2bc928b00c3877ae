"""RFC 9457 problem details for every error the API returns, and the models that
describe them in the OpenAPI document (hoard/api/openapi.py)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hoard.domain.errors import HoardError, Unauthorized

MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, in words a person can act on."""

    type: str = Field("about:blank", description="A URI naming the kind of problem; "
                      "about:blank means the status code says it all")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str = Field(description="What went wrong this time, and what to fix")
    instance: str | None = Field(None, description="The path of the request that failed")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, or 'body'")
    message: str


class ValidationProblem(Problem):
    """A problem with the request's content; ``errors`` names each bad field when
    the request failed schema validation."""

    errors: list[FieldError] | None = Field(None, description="One entry per bad field")


def problem(status: int, title: str, detail: str, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def unauthorized(exc: Unauthorized, instance: str | None = None) -> JSONResponse:
    """401 with the challenge RFC 9110 asks for."""
    return problem(exc.status, exc.title, exc.detail, instance,
                   headers={"WWW-Authenticate": 'Bearer realm="hoard"'})


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _allowed(request: Request, first: str) -> str:
    """Every method this path takes. Starlette's 405 names only the first matching
    route's (``first``), and each of Hoard's methods is a route of its own: the
    others are read from the OpenAPI document, whose templates are the routes'."""
    methods = {m.strip() for m in first.split(",") if m.strip()}
    paths: dict[str, Any] = request.app.openapi().get("paths", {})
    for template, operations in paths.items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)),
                        request.url.path):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(HoardError)
    async def hoard_error(request: Request, exc: HoardError) -> JSONResponse:
        if isinstance(exc, Unauthorized):
            return unauthorized(exc, request.url.path)
        return problem(exc.status, exc.title, exc.detail, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(400, "Malformed JSON", "the request body is not valid JSON",
                           request.url.path)
        fields = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")}
                  for e in errors]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem(422, "Invalid input", detail, request.url.path, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body it cannot even decode (not UTF-8).
            return problem(400, "Malformed JSON", "the request body is not valid UTF-8 JSON",
                           request.url.path)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 says which methods are allowed
            headers["Allow"] = _allowed(request, headers.get("Allow", ""))
        return problem(exc.status_code, title, str(exc.detail), request.url.path,
                       headers=headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception after this answer; the client gets no internals.
        return problem(500, "Internal error", "Hoard failed to handle this request; the "
                       "failure is in its log", request.url.path)
