"""The OpenAPI document at /v2/openapi.json, with every error response documented
as what the API really sends: RFC 9457 ``application/problem+json``.

FastAPI documents only the 422 of its own validation, as ``application/json``
with its internal error shape. Hoard answers every error through
hoard/api/problems.py and hoard/api/gate.py, so the document is corrected once,
here, from what each operation has (a body, path parameters, a security
requirement) rather than by annotating every route by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from hoard.api.problems import MEDIA_TYPE, Problem, ValidationProblem

REF = "#/components/schemas/{model}"

# Statuses every operation of a kind can answer, and why.
BODY_ERRORS = {
    "400": "Malformed JSON: the body is not JSON, or not UTF-8",
    "413": "The body is larger than the server's limit (HOARD_MAX_BODY_BYTES)",
    "415": "The body is not sent as application/json",
}
AUTH_ERRORS = {"401": "No valid bearer token (the body is not read)"}
PATH_ERRORS = {"404": "No such resource in this project"}
DEFAULT = ("Any other error, e.g. 403 (an admin call, or over the project's quota), "
           "409 (a conflict with the resource's state) or 500")


def _problem_content(schema: str) -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": {"$ref": REF.format(model=schema)}}}


def _document_operation(op: dict[str, Any], path: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    params = op.get("parameters", [])
    wanted: dict[str, str] = {}
    if "requestBody" in op:
        wanted.update(BODY_ERRORS)
    if op.get("security"):
        wanted.update(AUTH_ERRORS)
    if "{" in path:
        wanted.update(PATH_ERRORS)
    if "requestBody" in op or params:
        wanted["422"] = "Invalid input: a field or parameter is wrong (each is named)"
    for status, description in wanted.items():
        responses.setdefault(status, {})["description"] = description
    responses["default"] = {"description": DEFAULT}
    for status, response in responses.items():
        if status == "default" or status[0] in "45":
            schema = "ValidationProblem" if status == "422" else "Problem"
            response["content"] = _problem_content(schema)


def document_problems(doc: dict[str, Any]) -> None:
    """Rewrite ``doc`` in place: error responses are problem+json, described by the
    Problem and ValidationProblem schemas."""
    _, top = models_json_schema([(Problem, "serialization"), (ValidationProblem, "serialization")],
                                ref_template=REF)
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(top.get("$defs", {}))
    for path, operations in doc.get("paths", {}).items():
        for op in operations.values():
            _document_operation(op, path)
    # FastAPI's own error shapes are never sent.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install(app: FastAPI) -> None:
    """Serve the corrected document (built once, on first request)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_problems(build())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
