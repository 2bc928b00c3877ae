"""The web console: static HTML, CSS and ES modules, served by Hoard itself.

The console is a client of the public /v2 API like any other: the browser
calls /v2 with the project token the person typed, kept in the tab's
``sessionStorage``. This package only delivers files; it never reads the state
store or starts work, so the console can never do what the API would refuse.

- ``GET /`` with ``Accept: text/html`` answers ``index.html`` (JSON clients get
  the Trove version document there: hoard/api/app.py decides);
- ``GET /console/...`` answers the static files, without a token (they hold
  nothing secret), with a Content-Security-Policy that allows only this origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"

# Only this origin: no inline script or style, no CDN, no frames, no plugins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def is_console_path(path: str) -> bool:
    """Paths that serve the console's files (public: the gate asks for no token)."""
    return path.startswith(PREFIX + "/")


def wants_html(request: Request) -> bool:
    """A browser navigating to the page (API clients ask for JSON or anything)."""
    return "text/html" in request.headers.get("accept", "")


def page() -> Response:
    """The console's single page; the app in /console/js/ draws the rest."""
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


class _Files(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_headers)


def files() -> StaticFiles:
    """The ASGI app that serves /console/* (mounted by hoard/api/app.py)."""
    return _Files(directory=STATIC, check_dir=True)
