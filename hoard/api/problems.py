"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hoard.api.auth import PUBLIC_PATHS, identify
from hoard.domain.errors import HoardError, Unauthorized

MEDIA_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(HoardError)
    async def hoard_error(_: Request, exc: HoardError) -> JSONResponse:
        response = problem(exc.status, exc.title, exc.detail)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="hoard"'
        return response

    @app.middleware("http")
    async def json_bodies_only(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method in ("POST", "PUT", "PATCH") and request.headers.get("content-length",
                                                                             "0") != "0":
            ctype = request.headers.get("content-type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":
                return problem(415, "Unsupported media type",
                               f"send the body as application/json, not {ctype or 'untyped'}")
        return await call_next(request)

    @app.middleware("http")
    async def authenticate_first(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Added last, so it runs first. Authenticate before FastAPI reads the body:
        # a caller without a valid token learns nothing from how its payload
        # would have been judged.
        if request.url.path not in PUBLIC_PATHS:
            try:
                request.state.principal = await run_in_threadpool(identify, request)
            except Unauthorized as exc:
                return await hoard_error(request, exc)
        return await call_next(request)

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
