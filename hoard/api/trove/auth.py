"""``X-Auth-Token`` (a Hoard project token) and the project in the path, as Trove
clients send them: the same token lookup /v2 uses, through hoard.api.auth."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from hoard.api.auth import Principal, identify
from hoard.domain.errors import NotFound, Unauthorized
from hoard.security.tokens import hash_token

PREFIX = "/v1.0"


def is_trove_path(path: str) -> bool:
    """Paths the Trove API authenticates itself (the gate leaves them alone)."""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


async def tenant(request: Request, project_id: str) -> Principal:
    """The caller behind ``X-Auth-Token``; the project in the path must be its own
    (another project's is answered as /v2 answers another project's cluster: 404)."""
    token = request.headers.get("x-auth-token", "").strip()
    if not token:
        raise Unauthorized("send 'X-Auth-Token: <project token>'")
    principal = await run_in_threadpool(identify, request, hash_token(token))
    if principal.project_id != project_id:
        raise NotFound(f"no project {project_id!r}")
    return principal
