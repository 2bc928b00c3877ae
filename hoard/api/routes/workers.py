"""/v2/workers: the control plane's workers, their leases and what they own (admin)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from hoard.api.auth import Principal, authenticate
from hoard.store.models import ShardOwner, Worker

router = APIRouter(prefix="/v2/workers", tags=["workers"])
Auth = Annotated[Principal, Depends(authenticate)]


class WorkerView(BaseModel):
    id: str
    state: str  # alive | stopped | claimed | taken
    epoch: int
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime
    taken_by: str | None
    shards: list[int]  # the shards whose clusters it observes, archives and schedules


class WorkerList(BaseModel):
    workers: list[WorkerView]


@router.get("", response_model=WorkerList)
def list_workers(principal: Auth, request: Request) -> WorkerList:
    principal.require_admin()
    with request.app.state.services.store.session() as s:
        owned: dict[str, list[int]] = {}
        for shard, worker_id in s.execute(select(ShardOwner.shard, ShardOwner.worker_id)):
            if worker_id is not None:
                owned.setdefault(worker_id, []).append(shard)
        workers = list(s.scalars(select(Worker).order_by(Worker.id)))
        return WorkerList(workers=[WorkerView(
            id=w.id, state=w.state, epoch=w.epoch, host=w.host, pid=w.pid,
            started_at=w.started_at, heartbeat_at=w.heartbeat_at, expires_at=w.expires_at,
            taken_by=w.taken_by, shards=sorted(owned.get(w.id, []))) for w in workers])
