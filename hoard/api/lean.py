"""The cluster list served below FastAPI, for requests that are plainly valid.

Why: after the lean query (hoard/api/listing.py) a page cost about 0.5 ms, and
FastAPI's own work around it (routing, dependency resolution, query
validation, a thread hop for the sync route, the response model) about as
much again as everything else together. The list is the control plane's
hottest read, so this one route is answered by a plain ASGI layer between the
gate and the application.

Only a request that is certainly valid is answered here: the query holds
nothing but ``limit``, ``marker``, ``status`` and ``engine``, each at most
once, each within the route's own rules. Anything else (a bad value, an
unknown or repeated parameter) goes on to the FastAPI route, which gives the
one canonical answer, so the two paths cannot disagree about errors. The
route stays declared in FastAPI for the OpenAPI document;
tests/test_listing.py holds both paths to byte-identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from hoard.api import listing
from hoard.api.auth import Principal
from hoard.api.loopread import LoopReader
from hoard.domain.status import ClusterStatus
from hoard.ids import is_id

PATH = "/v2/clusters"
DEFAULT_LIMIT, MAX_LIMIT, MAX_ENGINE = 50, 1000, 32  # the FastAPI route's own rules
_STATUSES = frozenset(s.value for s in ClusterStatus)
_KNOWN = frozenset({"limit", "marker", "status", "engine"})


def plain_query(raw: bytes) -> dict[str, str] | None:
    """The list's parameters when every one is present at most once and valid by
    the route's rules; None when the FastAPI route should judge the request."""
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= _KNOWN:
        return None
    limit = params.get("limit", str(DEFAULT_LIMIT))
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
        return None
    if "marker" in params and not is_id(params["marker"]):
        return None
    if "status" in params and params["status"] not in _STATUSES:
        return None
    if "engine" in params and len(params["engine"]) > MAX_ENGINE:
        return None
    params["limit"] = str(int(limit))
    return params


def page(services: Any, principal: Principal, params: dict[str, str]) -> bytes:
    """One page of the project's clusters as JSON, with the next page's link."""
    with services.store.read() as conn:
        rows = listing.cluster_rows(conn, principal.project_id, int(params["limit"]) + 1,
                                    params.get("marker"), params.get("status"),
                                    params.get("engine"), label_pairs(params.get("label")))
    return _page_json(rows, params)


def label_pairs(selector: str | None) -> tuple[tuple[str, str], ...]:
    """``key=value,key=value`` (checked by the route) as pairs."""
    if not selector:
        return ()
    return tuple((k, v) for k, _, v in (part.partition("=") for part in selector.split(",")))


async def page_on_loop(reader: LoopReader, principal: Principal,
                       params: dict[str, str]) -> bytes:
    """``page``, read without leaving the event loop (hoard/api/loopread.py)."""
    sql, args = listing.statement(reader.dialect, principal.project_id,
                                  int(params["limit"]) + 1, params.get("marker"),
                                  params.get("status"), params.get("engine"))
    return _page_json(listing.shape(await reader.fetch(sql, args)), params)


def _page_json(rows: list[dict[str, Any]], params: dict[str, str]) -> bytes:
    limit = int(params["limit"])
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        link = [f"limit={limit}", f"marker={rows[-1]['id']}"]
        for name in ("status", "engine", "label"):
            if name in params:
                link.append(f"{name}={quote(params[name], safe=',')}")
        next_url = PATH + "?" + "&".join(link)
    return listing.page_json(rows, next_url)


@dataclass(frozen=True)
class RouteName:
    """What the gate's metrics read from ``scope["route"]``: the route's path."""

    path: str


_ROUTE = RouteName(PATH)


class LeanList:
    """ASGI layer: answers plainly valid ``GET /v2/clusters`` itself, passes on the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal")
        if (scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET"
                or not isinstance(principal, Principal)):
            await self.app(scope, receive, send)
            return
        params = plain_query(scope.get("query_string", b""))
        if params is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        state = scope["app"].state
        reader: LoopReader | None = getattr(state, "loop_reader", None)
        if reader is not None and int(params["limit"]) <= reader.max_rows:
            body = await page_on_loop(reader, principal, params)
        else:
            body = await run_in_threadpool(page, state.services, principal, params)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
