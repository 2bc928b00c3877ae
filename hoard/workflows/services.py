"""The composition root: builds the store, CA, secret box, provider and engines once.

Workflow steps run on worker threads and after restarts, so they reach these
through :func:`services` rather than through arguments (arguments are
recorded in the workflow store and must stay plain data).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO

from sqlalchemy import select, update

from hoard.backups.crypto import new_data_key
from hoard.backups.pipeline import store_from_url
from hoard.backups.store import BackupStore
from hoard.domain.catalog import SIZES
from hoard.domain.placement import parse_hosts
from hoard.engines.base import Engine, NodeContext, ParamValue, SealedCredentials
from hoard.engines.registry import ENGINES
from hoard.providers.base import Provider
from hoard.providers.kubernetes import from_settings as kubernetes
from hoard.providers.local import LocalProvider
from hoard.providers.netns import NetnsProvider
from hoard.security.ca import CertificateAuthority
from hoard.security.secrets import SecretBox, load_or_create_key
from hoard.settings import Settings
from hoard.store import models
from hoard.store.db import Store, check_schema, lock_single_process, migrate

SERVICE_USER = "hoard"


@dataclass
class Services:
    settings: Settings
    store: Store
    ca: CertificateAuthority
    box: SecretBox
    providers: dict[str, Provider]
    engines: dict[str, Engine]
    backup_store: BackupStore

    @property
    def provider(self) -> Provider:
        """The provider new clusters run on by default (``HOARD_PROVIDER``)."""
        return self.providers[self.settings.provider]

    def provider_for(self, owner: models.Cluster | models.Node) -> Provider:
        """The provider that runs ``owner``: a cluster is managed by the one it was
        made on for life, and every step on it or its nodes goes there."""
        provider = self.providers.get(owner.provider)
        if provider is None:
            raise RuntimeError(f"provider {owner.provider!r} is not enabled in this Hoard "
                               f"(enabled: {', '.join(self.providers)})")
        return provider

    def versions(self, engine: Engine, provider: str | None = None) -> list[str]:
        """The versions of ``engine`` that ``provider`` (the default one unless
        named) offers, newest first."""
        return self.providers[provider or self.settings.provider].versions(engine)

    @property
    def ca_file(self) -> str:
        return str(self.ca.cert_path)

    def node_context(
        self, cluster: models.Cluster, node: models.Node, size: str | None = None,
        parameters: Mapping[str, ParamValue] | None = None, storage_gb: int | None = None,
    ) -> NodeContext:
        """What the engine needs for ``node``; ``size``, ``parameters`` and
        ``storage_gb`` override the cluster's own (to compute the effect of a change
        before making it)."""
        assert node.host is not None and node.port is not None, "node is not placed yet"
        if parameters is None:
            parameters = dict(cluster.configuration.values) if cluster.configuration else {}
        return NodeContext(
            node_id=node.id,
            version=cluster.version,
            size=SIZES[size or cluster.size],
            host=node.host,
            port=node.port,
            service=SealedCredentials(SERVICE_USER, partial(self.box.open,
                                                            cluster.service_password)),
            admin=SealedCredentials(cluster.admin_user, partial(self.box.open,
                                                                cluster.admin_password)),
            parameters=parameters,
            storage_gb=storage_gb or cluster.storage_gb,
            listen=self.provider_for(node).listen_host(node.host),
        )

    def data_key(self, project_id: str) -> bytes:
        """The project's backup data key, made (and stored sealed) on first use.

        Two first uses may race (the archiver and a backup): the conditional
        UPDATE lets exactly one key in, and both then read the one stored."""
        with self.store.session() as s:
            s.execute(
                update(models.Project)
                .where(models.Project.id == project_id, models.Project.backup_key.is_(None))
                .values(backup_key=self.box.seal(base64.b64encode(new_data_key()).decode()))
            )
        with self.store.session() as s:
            sealed = s.scalar(select(models.Project.backup_key)
                              .where(models.Project.id == project_id))
        assert sealed is not None
        return base64.b64decode(self.box.open(sealed))


def _local(settings: Settings) -> Provider:
    local = LocalProvider(settings.nodes_dir, settings.db_os_user, settings.local_volumes,
                          hosts=parse_hosts(settings.local_hosts), uid_range=settings.uid_range,
                          addresses=settings.local_addresses)
    local.deadlines = replace(local.deadlines, start=settings.local_start_deadline)
    return local


def _netns(settings: Settings) -> Provider | None:
    if not settings.netns_network:
        return None  # not offered unless configured
    return NetnsProvider(settings.nodes_dir, settings.db_os_user, settings.local_volumes,
                         uid_range=settings.uid_range, network=settings.netns_network)


# Providers by name, each built from the settings: a new provider is its own
# package under hoard/providers/, one line here, and its tests.
PROVIDERS: dict[str, Callable[[Settings], Provider | None]] = {"local": _local,
                                                              "netns": _netns,
                                                              "kubernetes": kubernetes}

_services: Services | None = None
_lock: IO[bytes] | None = None  # a SQLite store's single-process lock, held for life


def build(settings: Settings, migrate_schema: bool = True) -> Services:
    """Prepare the state directory and store, and wire every component. With
    ``migrate_schema`` the store is brought up to date (``hoard serve``, the
    embedded default); otherwise it must be already (``hoard migrate``)."""
    global _services, _lock
    # Every database node runs as an OS account of its own and must reach its
    # directory under the state directory, but nothing else of Hoard's in it:
    # the state directory is traversable only, and what Hoard makes without an
    # explicit mode (the SQLite stores, the local backup store) is its own alone.
    os.umask(0o077)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.state_dir.chmod(0o711)
    for made_before in settings.state_dir.glob("*.sqlite*"):  # by a Hoard with another umask
        made_before.chmod(0o600)
    if settings.store_url.startswith("sqlite:///"):
        _lock = lock_single_process(Path(settings.store_url.removeprefix("sqlite:///")))
    if migrate_schema:
        migrate(settings.store_url)
    else:
        check_schema(settings.store_url)
    key = load_or_create_key(settings.state_dir / "secret.key", settings.secret_key)
    providers = {name: made for name, make in PROVIDERS.items()
                 if (made := make(settings)) is not None}
    if settings.provider not in providers:
        raise ValueError(f"HOARD_PROVIDER={settings.provider!r}: the providers offered are "
                         f"{', '.join(providers)} (netns needs HOARD_NETNS_NETWORK, "
                         "kubernetes HOARD_KUBECONFIG)")
    _services = Services(
        settings=settings,
        store=Store(settings.store_url),
        ca=CertificateAuthority(settings.ca_dir),
        box=SecretBox(key),
        providers=providers,
        engines=ENGINES,
        backup_store=store_from_url(settings.backup_store_url),
    )
    return _services


def services() -> Services:
    if _services is None:
        raise RuntimeError("hoard services are not built yet")
    return _services
