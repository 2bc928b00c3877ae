"""/v2/operations: follow a long-running change to its end."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hoard.api.auth import Principal, authenticate
from hoard.api.schemas import OperationView
from hoard.api.views import operation_view
from hoard.domain.errors import NotFound
from hoard.store.models import Operation

router = APIRouter(prefix="/v2/operations", tags=["operations"])


@router.get("/{operation_id}", response_model=OperationView)
def show_operation(
    operation_id: str, principal: Annotated[Principal, Depends(authenticate)], request: Request
) -> OperationView:
    with request.app.state.services.store.session() as s:
        op = s.get(Operation, operation_id)
        if op is None or op.project_id != principal.project_id:
            raise NotFound(f"no operation {operation_id!r} in this project")
        return operation_view(op)
