"""A cluster's history, written by the API, the workflows and the observer."""

from __future__ import annotations

from sqlalchemy.orm import Session

from hoard.ids import new_id
from hoard.store.models import Event


def record(
    session: Session, cluster_id: str, kind: str, message: str, operation_id: str | None = None
) -> None:
    session.add(Event(id=new_id(), cluster_id=cluster_id, kind=kind, message=message[:2000],
                      operation_id=operation_id))
