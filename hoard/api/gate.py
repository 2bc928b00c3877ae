"""The API's front gate, as one plain ASGI middleware (Starlette's
``BaseHTTPMiddleware`` costs a task and a stream per layer per request):

1. authenticate before FastAPI reads the body (401), so a caller without a
   valid token learns nothing from how its payload would have been judged;
2. refuse bodies that are not JSON (415);
3. count and time every request for /metrics.
"""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hoard.api.auth import PUBLIC_PATHS, identify
from hoard.api.metrics import ApiMetrics
from hoard.api.problems import problem, unauthorized
from hoard.domain.errors import Unauthorized


class Gate:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.requests = metrics.requests
        self.latency = metrics.latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        refusal = await self._refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, remember_status)
        else:
            await self.app(scope, receive, remember_status)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
        self.requests.labels(scope["method"], route, str(status)).inc()

    async def _refusal(self, request: Request) -> Response | None:
        if request.url.path not in PUBLIC_PATHS:
            try:
                # Kept in the request's state, where the route's dependency finds it.
                request.state.principal = await run_in_threadpool(identify, request)
            except Unauthorized as exc:
                return unauthorized(exc)
        if request.method in ("POST", "PUT", "PATCH") and request.headers.get(
            "content-length", "0"
        ) != "0":
            ctype = request.headers.get("content-type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":
                return problem(415, "Unsupported media type",
                               f"send the body as application/json, not {ctype or 'untyped'}")
        return None
