"""The versions a cluster may run are its provider's answer, not a look at the
API host's disk: the catalog and creates ask ``Provider.versions``. The local
provider offers this host's binaries; ``Catalogued`` stands for a provider that
runs images from a registry (a Kubernetes one cannot run here) and offers what
its catalogue lists."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hoard.api.auth import Principal
from hoard.api.routes.clusters import _resolve_version, create
from hoard.api.schemas import ClusterCreate
from hoard.domain.errors import InvalidInput
from hoard.ids import new_id
from hoard.providers.base import Versioned
from hoard.providers.local import LocalProvider
from hoard.settings import Settings
from hoard.store.models import Backup, Cluster, Project
from hoard.workflows.services import Services, build


class Catalogued(LocalProvider):
    """Offers PostgreSQL 17 and 16 only, whatever this host has installed."""

    def versions(self, engine: Versioned) -> list[str]:
        return ["17", "16"] if engine.name == "postgresql" else []


@pytest.fixture(scope="module")
def svc() -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="hoard-versions-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o711)  # node accounts must traverse to their directories
        services = build(Settings(state_dir=Path(tmp) / "state"))
        services.providers["catalogued"] = Catalogued(Path(tmp) / "catalogued", "hoard-db")
        yield services
        services.store.engine.dispose()


def _create(**fields: object) -> ClusterCreate:
    return ClusterCreate.model_validate({"name": "v", "engine": "postgresql", "size": "nano",
                                         **fields})


def test_the_local_provider_offers_this_hosts_binaries(svc: Services) -> None:
    for engine in svc.engines.values():
        assert svc.versions(engine) == engine.installed_versions()
    assert svc.versions(svc.engines["postgresql"], "local") == ["15"]  # postgresql-15


def test_a_create_takes_its_providers_versions(svc: Services) -> None:
    assert _resolve_version(svc, _create(), "catalogued") == "17"
    assert _resolve_version(svc, _create(version="16"), "catalogued") == "16"
    with pytest.raises(InvalidInput, match=r"unknown postgresql version '15' on provider "
                                           r"'catalogued'; available: 17, 16"):
        _resolve_version(svc, _create(version="15"), "catalogued")
    with pytest.raises(InvalidInput, match="provider 'catalogued' offers no version of "
                                           "engine 'redis'"):
        _resolve_version(svc, _create(engine="redis"), "catalogued")
    assert _resolve_version(svc, _create(version="15"), "local") == "15"


def test_a_restore_takes_the_backups_version_to_a_provider_offering_it(svc: Services) -> None:
    """The backup's version decides, not the create's: a PostgreSQL 15 backup
    cannot become a cluster on a provider offering 17 and 16; nothing is recorded."""
    project, backup = new_id(), new_id()
    with svc.store.session() as s:
        s.add(Project(id=project, name="restores", quota_clusters=5, quota_nodes=5,
                      quota_storage_gb=100))
        s.flush()
        s.add(Backup(id=backup, project_id=project, cluster_id=new_id(), cluster_name="pg15",
                     engine="postgresql", version="15", storage_gb=10, kind="full",
                     reason="manual", status="available", object_key="k",
                     admin_user="admin", admin_password="x", service_password="y"))
    body = _create(restore={"backup_id": backup}, provider="catalogued")
    with pytest.raises(InvalidInput, match=r"^unknown postgresql version '15' on provider "
                                           r"'catalogued'; available: 17, 16$"):
        create(svc, Principal(project, is_admin=False), body)
    with svc.store.session() as s:
        assert s.scalars(select(Cluster.id).where(Cluster.project_id == project)).all() == []
