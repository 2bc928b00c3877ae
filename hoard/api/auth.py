"""Bearer-token authentication and the admin bootstrap."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from hoard.domain.errors import Forbidden, Unauthorized
from hoard.ids import new_id
from hoard.security.tokens import generate_token, hash_token
from hoard.settings import Settings
from hoard.store.db import Store
from hoard.store.models import Project, Token

ADMIN_PROJECT = "admin"


@dataclass(frozen=True)
class Principal:
    project_id: str
    is_admin: bool

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this call needs an admin token")


PUBLIC_PATHS = frozenset({"/v2", "/v2/ca.pem", "/v2/openapi.json", "/v2/docs"})
_bearer = HTTPBearer(auto_error=False, description="A project or admin token")


# Valid tokens are remembered briefly: the lookup is most of a cheap request's
# cost. Only valid ones, so a wrong token always costs a lookup; a token removed
# from the store stops working within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_known: dict[str, tuple[float, Principal]] = {}


def token_digest(request: Request) -> str:
    """The hash of the request's bearer token, or Unauthorized when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return hash_token(token.strip())


def remembered(digest: str) -> Principal | None:
    """The principal of a token looked up less than CACHE_SECONDS ago: cheap enough
    to answer on the event loop, with no thread hop."""
    cached = _known.get(digest)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def identify(request: Request, digest: str | None = None) -> Principal:
    """The caller behind the request's bearer token, or Unauthorized."""
    digest = digest or token_digest(request)
    cached = remembered(digest)
    if cached is not None:
        return cached
    now = time.monotonic()
    store: Store = request.app.state.services.store
    with store.read() as s:
        row = s.execute(
            select(Project.id, Project.is_admin)
            .join(Token, Token.project_id == Project.id)
            .where(Token.token_hash == digest)
        ).first()
    if row is None:
        raise Unauthorized("the token is not valid")
    principal = Principal(project_id=row[0], is_admin=bool(row[1]))
    if len(_known) >= _CACHE_MAX:
        _known.clear()
    _known[digest] = (now + CACHE_SECONDS, principal)
    return principal


async def authenticate(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Route dependency: the principal the auth middleware found (declared with
    HTTPBearer so OpenAPI shows the scheme). Async, so FastAPI answers it on the
    event loop instead of sending a plain lookup to a thread."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return await run_in_threadpool(identify, request)


def bootstrap_admin(store: Store, settings: Settings) -> None:
    """Make sure the admin project and an admin token exist.

    ``HOARD_ADMIN_TOKEN`` wins when set; otherwise a token is generated once and
    written to ``<state dir>/admin-token`` with mode 0600. API processes starting
    together may race to make them: the loser finds the winner's rows.
    """
    try:
        _bootstrap_admin(store, settings)
    except IntegrityError:
        _bootstrap_admin(store, settings)


def _bootstrap_admin(store: Store, settings: Settings) -> None:
    with store.session() as s:
        project = s.scalars(select(Project).where(Project.name == ADMIN_PROJECT)).first()
        if project is None:
            project = Project(
                id=new_id(), name=ADMIN_PROJECT, is_admin=True,
                quota_clusters=settings.default_quota_clusters,
                quota_nodes=settings.default_quota_nodes,
                quota_storage_gb=settings.default_quota_storage_gb,
            )
            s.add(project)
            s.flush()
        token_file = settings.state_dir / "admin-token"
        token = settings.admin_token
        if not token:
            has_any = s.scalars(select(Token).where(Token.project_id == project.id)).first()
            if has_any is not None and token_file.exists():
                return
            token = generate_token()
            _write_secret(token_file, token)
        digest = hash_token(token)
        if s.scalars(select(Token).where(Token.token_hash == digest)).first() is None:
            s.add(Token(id=new_id(), project_id=project.id, token_hash=digest,
                        description="bootstrap admin token"))


def _write_secret(path: Path, value: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    tmp.replace(path)
