"""POST /v2/backups/{id}/actions/verify: prove a backup restorable now.

Everything is checked before any work: the backup is the caller's, complete,
of an engine with checks of its own and a version this Hoard can run, and no
other verification of it runs. The work is a durable operation
(``hoard.workflows.verification``) on the backup's cluster, which it does not
claim: the cluster keeps serving and taking other changes meanwhile.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hoard.api.auth import Principal, authenticate
from hoard.api.routes.backups import _get_backup, _services, backup_view
from hoard.api.schemas import BackupAccepted, Strict
from hoard.api.views import operation_view
from hoard.domain.errors import Conflict, InvalidInput
from hoard.engines.base import Backups, VerifiesRestores
from hoard.ids import is_id
from hoard.store import models
from hoard.workflows import runtime, verification

router = APIRouter(tags=["backups"])
Auth = Annotated[Principal, Depends(authenticate)]


class VerifyRequest(Strict):
    """No options yet: the backup is restored with its engine's defaults."""


@router.post("/v2/backups/{backup_id}/actions/verify", status_code=202,
             response_model=BackupAccepted)
def verify_backup(backup_id: str, principal: Auth, request: Request,
                  body: VerifyRequest | None = None) -> BackupAccepted:
    """Restore the backup into a throwaway node, run the engine's own checks and
    count every table's rows; the outcome goes on the backup (``verification``)
    and, when it passes, on its cluster (``last_verified_restorable_at``)."""
    svc = _services(request)
    if not is_id(backup_id):
        raise InvalidInput(f"{backup_id!r} is not a backup id")
    with svc.store.session() as s:
        backup = _get_backup(s, principal, backup_id)
        if backup.status != "available":
            raise Conflict(f"backup {backup_id} is {backup.status}, not available: only a "
                           "complete backup can be verified")
        engine = svc.engines.get(backup.engine)
        if not isinstance(engine, Backups) or not isinstance(engine, VerifiesRestores):
            raise InvalidInput(f"{backup.engine} backups cannot be verified")
        cluster = s.get(models.Cluster, backup.cluster_id)
        provider = cluster.provider if cluster else svc.settings.provider
        if provider not in svc.providers:
            raise Conflict(f"the backup's cluster runs on provider {provider!r}, which is "
                           "not enabled here")
        offered = svc.versions(engine, provider)
        if backup.version not in offered:
            raise Conflict(f"the backup is of {engine.display_name} {backup.version}, which "
                           f"provider {provider!r} does not run (it offers "
                           f"{', '.join(offered) or 'none'})")
        op = verification.new_verification(svc, s, backup, "requested")
        if op is None:
            raise Conflict(f"operation {backup.verifying_operation_id} is verifying this "
                           "backup already; follow it, or try again when it ends")
        s.flush()
        s.refresh(backup)  # the claim was a plain UPDATE
        accepted = BackupAccepted(backup=backup_view(backup), operation=operation_view(op))
    runtime.start(op)
    return accepted
