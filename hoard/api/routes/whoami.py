"""/v2/whoami: whose the calling token is, so a client (the console, a script) can
say "signed in as" and find its own project without being told its id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from hoard.api.auth import Principal, authenticate, token_digest
from hoard.api.schemas import TokenInfo, WhoAmI
from hoard.api.views import utc
from hoard.domain.errors import Unauthorized
from hoard.store.models import Project, Token

router = APIRouter(prefix="/v2/whoami", tags=["projects"])
Auth = Annotated[Principal, Depends(authenticate)]


@router.get("", response_model=WhoAmI)
def whoami(principal: Auth, request: Request) -> WhoAmI:
    """The token's project (id and name), whether it is an admin's, and the token's
    id, description and creation time."""
    digest = token_digest(request)
    with request.app.state.services.store.read() as conn:
        row = conn.execute(
            select(Project.id, Project.name, Project.is_admin, Token.id, Token.description,
                   Token.created_at)
            .join(Token, Token.project_id == Project.id)
            .where(Token.token_hash == digest)
        ).first()
    if row is None or row[0] != principal.project_id:  # removed since it was checked
        raise Unauthorized("the token is not valid")
    return WhoAmI(project_id=row[0], project_name=row[1], is_admin=bool(row[2]),
                  token=TokenInfo(id=row[3], description=row[4], created_at=utc(row[5])))
