"""/v2/projects: tenants, their quotas and their API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hoard.api.auth import Principal, authenticate
from hoard.api.changes import usage
from hoard.api.schemas import ProjectCreate, ProjectView, Quotas, TokenCreate, TokenView
from hoard.api.views import utc
from hoard.domain.errors import Conflict, NotFound
from hoard.ids import new_id
from hoard.security.tokens import generate_token, hash_token
from hoard.store.models import Project, Token

router = APIRouter(prefix="/v2/projects", tags=["projects"])
Auth = Annotated[Principal, Depends(authenticate)]


def _view(s: Session, p: Project) -> ProjectView:
    count, nodes, storage = usage(s, p.id)
    return ProjectView(
        id=p.id, name=p.name, created_at=utc(p.created_at),
        quotas=Quotas(clusters=p.quota_clusters, nodes=p.quota_nodes,
                      storage_gb=p.quota_storage_gb),
        usage=Quotas(clusters=count, nodes=nodes, storage_gb=storage),
    )


@router.post("", status_code=201, response_model=ProjectView)
def create_project(body: ProjectCreate, principal: Auth, request: Request) -> ProjectView:
    principal.require_admin()
    settings = request.app.state.services.settings
    quotas = body.quotas or Quotas(
        clusters=settings.default_quota_clusters, nodes=settings.default_quota_nodes,
        storage_gb=settings.default_quota_storage_gb,
    )
    try:
        with request.app.state.services.store.session() as s:
            project = Project(
                id=new_id(), name=body.name, is_admin=False, quota_clusters=quotas.clusters,
                quota_nodes=quotas.nodes, quota_storage_gb=quotas.storage_gb,
            )
            s.add(project)
            s.flush()
            return _view(s, project)
    except IntegrityError:
        raise Conflict(f"a project named {body.name!r} already exists") from None


@router.get("", response_model=list[ProjectView])
def list_projects(principal: Auth, request: Request) -> list[ProjectView]:
    principal.require_admin()
    with request.app.state.services.store.session() as s:
        return [_view(s, p) for p in s.scalars(select(Project).order_by(Project.id))]


@router.get("/{project_id}", response_model=ProjectView)
def show_project(project_id: str, principal: Auth, request: Request) -> ProjectView:
    """A project's quotas and usage: admins see any, a tenant sees its own."""
    with request.app.state.services.store.session() as s:
        project = s.get(Project, project_id)
        if project is None or not (principal.is_admin or principal.project_id == project_id):
            raise NotFound(f"no project {project_id!r}")
        return _view(s, project)


@router.post("/{project_id}/tokens", status_code=201, response_model=TokenView)
def create_token(
    project_id: str, body: TokenCreate, principal: Auth, request: Request
) -> TokenView:
    principal.require_admin()
    token = generate_token()
    with request.app.state.services.store.session() as s:
        if s.get(Project, project_id) is None:
            raise NotFound(f"no project {project_id!r}")
        row = Token(id=new_id(), project_id=project_id, token_hash=hash_token(token),
                    description=body.description)
        s.add(row)
    return TokenView(id=row.id, project_id=project_id, description=body.description, token=token)
