"""The API's front gate, as one plain ASGI middleware (Starlette's
``BaseHTTPMiddleware`` costs a task and a stream per layer per request):

1. authenticate before the body is read (401), so a caller without a valid
   token learns nothing from how its payload would have been judged;
2. refuse a body over ``max_body_bytes`` (413): at once when Content-Length says
   so, otherwise (chunked) as soon as the bytes read pass the limit; reading
   stops there, so a huge body costs the server no memory;
3. refuse bodies that are not JSON (415), and JSON nested deeper than
   ``MAX_JSON_DEPTH`` (422) before anything parses it for real;
4. count and time every request for /metrics.

The body, once read and checked, is handed to the application as one message.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hoard.api.auth import PUBLIC_PATHS, identify, remembered, token_digest
from hoard.api.metrics import ApiMetrics
from hoard.api.problems import problem, unauthorized
from hoard.api.trove.auth import is_trove_path
from hoard.console import is_console_path
from hoard.domain.errors import Unauthorized

MAX_JSON_DEPTH = 32  # Hoard's own bodies nest 3 levels; this leaves room, not recursion
BODY_METHODS = ("POST", "PUT", "PATCH")


def too_deep(value: Any, limit: int) -> bool:
    """Whether parsed JSON nests more than ``limit`` arrays/objects (iterative: a
    deep value must not exhaust the stack here either)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _brackets(body: bytes) -> int:
    return body.count(b"[") + body.count(b"{")


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether a JSON body nests deeper than ``limit``. Bodies with few brackets
    cannot and are not parsed; malformed JSON is left to the real parser."""
    if _brackets(body) <= limit:
        return False
    try:
        value = json.loads(body)
    except RecursionError:
        return True  # deeper than the interpreter's own limit, far past ours
    except ValueError:
        return False
    return too_deep(value, limit)


class Gate:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.requests = metrics.requests
        self.latency = metrics.latency
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 499  # what the metrics say if the client leaves before an answer

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        request = Request(scope)
        replay: Receive | None = None
        refusal = await self._refusal(request)
        if refusal is None:
            refusal, replay = await self._take_body(request, receive)
        if refusal is not None:
            await refusal(scope, receive, remember_status)
        elif replay is not None:
            await self.app(scope, replay, remember_status)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
        self.requests.labels(scope["method"], route, str(status)).inc()

    async def _refusal(self, request: Request) -> Response | None:
        # The Trove API reads its own X-Auth-Token (hoard/api/trove/auth.py); the
        # console's files are public (the page then calls /v2 with a token).
        path = request.url.path
        if path not in PUBLIC_PATHS and not is_trove_path(path) and not is_console_path(path):
            try:
                # Kept in the request's state, where the route's dependency finds it.
                # A token seen in the last few seconds is answered here; only a
                # store lookup goes to a thread.
                digest = token_digest(request)
                principal = remembered(digest)
                if principal is None:
                    principal = await run_in_threadpool(identify, request, digest)
                request.state.principal = principal
            except Unauthorized as exc:
                return unauthorized(exc, request.url.path)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large(request)
        return None

    def _too_large(self, request: Request) -> Response:
        return problem(413, "Content too large",
                       f"the request body is over this server's limit of "
                       f"{self.max_body_bytes} bytes", request.url.path)

    async def _take_body(self, request: Request, receive: Receive
                         ) -> tuple[Response | None, Receive | None]:
        """Read the body, counting, and check it: (a refusal, None), or (None, a
        receive that hands the application the body), or (None, None) when the
        client left before sending all of it."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large(request), None  # stop reading: the rest stays unread
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        refusal = await self._check_body(request, body)
        if refusal is not None:
            return refusal, None
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay

    async def _check_body(self, request: Request, body: bytes) -> Response | None:
        if not body:
            return None
        ctype = Headers(scope=request.scope).get("content-type", "")
        is_json = ctype.split(";")[0].strip().lower() == "application/json"
        if request.method in BODY_METHODS and not is_json:
            return problem(415, "Unsupported media type",
                           f"send the body as application/json, not {ctype or 'untyped'}",
                           request.url.path)
        # Parsing a bracket-heavy body takes a while: not on the event loop.
        if is_json and _brackets(body) > MAX_JSON_DEPTH and await run_in_threadpool(
                nesting_exceeds, body, MAX_JSON_DEPTH):
            return problem(422, "JSON too deeply nested",
                           f"JSON nested deeper than {MAX_JSON_DEPTH} levels; Hoard's "
                           "requests need no more than a few", request.url.path)
        return None
