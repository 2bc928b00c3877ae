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

from hoard.api.routes.clusters import _resolve_version
from hoard.api.schemas import ClusterCreate
from hoard.domain.errors import InvalidInput
from hoard.providers.base import Versioned
from hoard.providers.local import LocalProvider
from hoard.settings import Settings
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
