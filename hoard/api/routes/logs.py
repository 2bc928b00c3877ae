"""/v2/clusters/{id}/logs: a node's server log or slow-query log, secrets
scrubbed, as one bounded answer or followed as NDJSON (hoard/workflows/logs.py
reads them through the node's provider)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.schemas import ID_SCHEMA, LogLineView, LogPage
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.engines.logs import ServerLogs
from hoard.ids import is_id
from hoard.workflows import logs
from hoard.workflows.logs import LogLine, LogUnavailable, NodeLog
from hoard.workflows.members import primary_node
from hoard.workflows.services import Services

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v2/clusters/{cluster_id}", tags=["logs"])
Auth = Annotated[Principal, Depends(authenticate)]
NDJSON = "application/x-ndjson"
# RFC 3339: a date, "T" (or a space), a time, and a zone ("Z" or an offset).
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]\d\d:\d\d)")

FOLLOWED = {200: {"description": "The log: JSON, or NDJSON (one LogLineView a line) "
                                 "when following",
                  "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/LogLineView"}}}}}


def parse_since(value: str) -> datetime:
    """An RFC 3339 time, zone included (a time without one means nothing here). A
    "+" left unencoded in the query string arrives as a space: taken as the "+"."""
    value = re.sub(r"(\d\d:\d\d(?:\.\d+)?) (\d\d:\d\d)$", r"\1+\2", value)
    if not RFC3339.fullmatch(value):
        raise InvalidInput(f"since {value!r}: give an RFC 3339 time with its zone, e.g. "
                           "2026-01-01T12:00:00Z")
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper().replace(" ", "T").replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"since {value!r}: {exc}") from None


def _node_log(svc: Services, principal: Principal, cluster_id: str, node_id: str | None,
              kind: str) -> NodeLog:
    if node_id is not None and not is_id(node_id):
        raise InvalidInput(f"node {node_id!r} is not a node id (GET /v2/clusters/{{id}} "
                           "lists them)")
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        engine = svc.engines[cluster.engine]
        if not isinstance(engine, ServerLogs):
            raise InvalidInput(f"{engine.display_name} keeps no logs Hoard can read")
        if node_id is None:
            if not cluster.nodes:
                raise Conflict(f"the cluster is {cluster.status} and has no node")
            node = primary_node(cluster)
        else:
            found = [n for n in cluster.nodes if n.id == node_id]
            if not found:
                raise NotFound(f"no node {node_id!r} in cluster {cluster.name!r}")
            node = found[0]
        if node.host is None or node.port is None:
            raise Conflict(f"node {node.id} is not placed yet: it has no log")
        return NodeLog(engine, svc.provider_for(node), svc.node_context(cluster, node),
                       svc.ca_file, kind)


def _time(at: datetime | None) -> str | None:
    """UTC as the rest of the API writes it (``...Z``)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else None


def _view(line: LogLine) -> dict[str, Any]:
    return {"time": _time(line.time), "node": line.node, "line": line.line}


@router.get("/logs", response_model=LogPage, responses=FOLLOWED)  # type: ignore[arg-type]
def read_logs(
    cluster_id: str, principal: Auth, request: Request,
    node: Annotated[str | None, Query(description="A node id; default: the primary (or the "
                                                  "only node)",
                                      json_schema_extra=ID_SCHEMA)] = None,
    since: Annotated[str | None, Query(max_length=64, description="Only entries at or after "
                                       "this RFC 3339 time",
                                       json_schema_extra={"format": "date-time"})] = None,
    kind: Annotated[Literal["server", "slow"], Query(
        description="server: the server's log; slow: its slow-query log (the threshold is "
                    "a configuration parameter, see GET /v2/engines/{name})")] = "server",
    follow: Annotated[bool, Query(description="Stream new entries as NDJSON as they are "
                                  "written, until the client leaves or a limit ends it")] = False,
    limit: Annotated[int, Query(ge=1, le=logs.MAX_LINES,
                                description="The newest this many entries")] = 200,
) -> Any:
    """A node's log, secrets scrubbed (``***``): the newest ``limit`` entries, oldest
    first; with ``follow``, those and then every new entry as it is written (NDJSON),
    for at most 10,000 entries or an hour."""
    when = parse_since(since) if since is not None else None
    log = _node_log(request.app.state.services, principal, cluster_id, node, kind)
    try:
        lines, truncated = log.read(when, limit)
    except LogUnavailable as exc:
        raise Conflict(str(exc)) from None
    if not follow:
        return LogPage(kind=kind, lines=[LogLineView(**_view(x)) for x in lines],
                       truncated=truncated, limit=limit)
    return StreamingResponse(_follow(request, log, lines), media_type=NDJSON)


async def _follow(request: Request, log: NodeLog, backlog: list[LogLine]) -> AsyncIterator[bytes]:
    """The backlog, then new entries every ``FOLLOW_POLL_SECONDS``, until the client
    leaves or a bound is reached (said in a last ``{"end": ...}`` line)."""
    sent = 0
    started = time.monotonic()
    pending = backlog
    while True:
        for line in pending:
            yield json.dumps(_view(line)).encode() + b"\n"
            sent += 1
            if sent >= logs.FOLLOW_MAX_LINES:
                after = _time(line.time) or "the last time seen"
                yield _end(f"{logs.FOLLOW_MAX_LINES} entries sent, the most one answer "
                           f"holds: follow again with since={after}")
                return
        if time.monotonic() - started > logs.FOLLOW_MAX_SECONDS:
            yield _end(f"followed for {logs.FOLLOW_MAX_SECONDS:g} s, the longest one answer "
                       "lasts: follow again")
            return
        await asyncio.sleep(logs.FOLLOW_POLL_SECONDS)
        if await request.is_disconnected():
            return
        try:
            pending = await run_in_threadpool(log.more)
        except LogUnavailable as exc:
            yield _end(str(exc))
            return
        except Exception:  # the answer has begun: end it in words, not a cut connection
            logger.exception("following the %s log of node %s failed", log.kind,
                             log.ctx.node_id)
            yield _end("reading the log failed; the failure is in Hoard's log")
            return


def _end(reason: str) -> bytes:
    return json.dumps({"end": reason}).encode() + b"\n"
