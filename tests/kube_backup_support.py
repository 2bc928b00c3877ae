"""Nodes whose files and tools Hoard reaches only by exec (the Kubernetes
provider's ``ExecRunner``), for backup, restore and log-shipping tests with the
engines' real tools.

No kubelet can run here, so a node's pod is played by two named stand-ins:
its "server" container's process runs under the local provider's supervisor,
as the node's own OS account, in the node's directory (what a kubelet would
run from the declaration); every command Hoard runs in the pod goes through
the runner, over the exec protocol, to the exec stand-in (tests/kube_exec.py),
which runs it as that same account in that directory (a kubelet runs it as the
container's user). Nothing else touches the node's files: bootstrap, TLS,
configuration, backup, log shipping and restore all go through the runner.

Hoard's own files (its CA's certificate and key) are in a directory no node
account can enter, so a tool handed a path on Hoard's side fails here as it
would in a pod. Backups and logs go through Hoard's real pipeline (encrypted,
checksummed) into a local backup store and back."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from hoard.backups.local import LocalStore
from hoard.backups.pipeline import download, upload
from hoard.domain.catalog import SIZES
from hoard.domain.nodes import Volume
from hoard.engines.base import (
    Backups,
    Credentials,
    Engine,
    IncrementalBackups,
    NodeContext,
    ParamValue,
)
from hoard.ids import new_id
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.execrunner import ExecRunner
from hoard.providers.kubernetes.provider import KubernetesProvider
from hoard.providers.local import LocalProvider
from hoard.security.ca import CertificateAuthority
from hoard.security.secrets import generate_password
from tests.conftest import make_state_dir, remove_state_dir
from tests.kube_exec import StandInExec
from tests.kube_support import (
    MockApi,
    kubeconfig_for,
    mock_api,
    node_spec,
    provider_for,
    running_pod,
)
from tests.serverlogs import print_logs


@dataclass
class StoredBackup:
    """A backup as the backup workflow keeps it: an encrypted object and its meta."""

    key: str
    sha256: str
    meta: dict[str, str]


@dataclass
class ExecNode:
    engine: Engine
    ctx: NodeContext
    runner: ExecRunner
    ca_file: str  # Hoard's copy of its CA certificate (the test's process reads it)


@dataclass
class ExecWorld:
    """The emulator, the exec stand-in in front of it, the provider's client,
    a local provider for the servers' processes, Hoard's CA and a backup store."""

    api: MockApi
    standin: StandInExec
    provider: KubernetesProvider
    local: LocalProvider
    ca: CertificateAuthority
    store: LocalStore
    hoard_dir: Path  # Hoard's side: no node account can enter it
    data_key: bytes = field(default_factory=lambda: os.urandom(32))

    def pod_running(self, node_id: str, ready: bool) -> None:
        """Write the pod the node's StatefulSet makes, running (``ready``: its
        containers pass their probes), as the kubelet reports it: the emulator
        runs no controllers."""
        template = self.api.objects("statefulsets")[names.node_object(node_id)]["spec"][
            "template"]
        running_pod(self.api, names.pod(node_id), template, ready)

    def _pod(self, engine: Engine, node_id: str) -> ExecRunner:
        """Place and hold the node on the provider (its volume declared at the node's
        directory), write the pod its StatefulSet would make, running (the emulator
        runs no controllers), and answer the provider's own runner for it."""
        spec = node_spec(engine.name, node_id, node_id, storage_gb=1)
        spec = replace(spec, volume=Volume(1, str(self.local.nodes_dir / node_id)))
        self.provider.place(node_id, set(), 1)
        self.provider.hold(node_id, spec)
        self.pod_running(node_id, ready=False)
        runner = self.provider.runner(node_id)
        assert isinstance(runner, ExecRunner)
        return runner

    @contextmanager
    def node(self, engine: Engine, restore: Restore | None = None, size: str = "nano",
             parameters: Mapping[str, ParamValue] | None = None,
             node_id: str | None = None) -> Iterator[ExecNode]:
        """Bootstrap (or restore), TLS and configuration by exec; the server run
        by the stand-in for the kubelet; the restore finished and the tenant's
        account made. Destroyed afterwards."""
        node_id = node_id or new_id()
        try:
            placement = self.local.place(node_id, set(), 1)
            user = self.local.node_user(node_id)
            self.standin.users[names.pod(node_id)] = (user.uid, user.gid)
            runner = self._pod(engine, node_id)
            ctx = NodeContext(
                node_id=node_id, version=engine.installed_versions()[0], size=SIZES[size],
                host=placement.host, port=placement.port,
                service=restore.service if restore else Credentials("hoard", generate_password()),
                admin=restore.admin if restore else Credentials("admin", generate_password()),
                parameters=dict(parameters or {}))
            if restore is None:
                engine.bootstrap(ctx, runner)
            else:
                assert isinstance(engine, Backups)
                chain, logs = restore.given or (
                    [(self.read(b), b.meta) for b in restore.chain],
                    [(log.key.rsplit("/", 1)[1].removesuffix(".enc"), self.read(log))
                     for log in restore.logs])
                if len(chain) > 1:
                    assert isinstance(engine, IncrementalBackups)
                    engine.restore_chain(ctx, runner, chain, logs, restore.target)
                else:
                    (stream, meta), = chain
                    engine.restore(ctx, runner, stream, meta, logs, restore.target)
            cert = self.ca.issue_server_cert(node_id, [placement.host, "localhost"])
            engine.install_tls(runner, cert.cert_pem, cert.key_pem, self.ca.cert_pem)
            engine.configure(ctx, runner)
            self.local.start_process(node_id, engine.process(ctx, runner))
            node = ExecNode(engine, ctx, runner, str(self.ca.cert_path))
            wait_healthy(node, self.local)
            if restore is not None:
                assert isinstance(engine, Backups)
                engine.finish_restore(ctx, node.ca_file, runner, restore.target)
            engine.initialize(ctx, node.ca_file)
            yield node
        except BaseException:
            print_logs(self.local.nodes_dir.parent)
            raise
        finally:
            self.local.destroy(node_id)
            self.provider.destroy(node_id)
            self.standin.users.pop(names.pod(node_id), None)

    # --- the backup store ---

    def backup(self, node: ExecNode, base: StoredBackup | None = None) -> StoredBackup:
        """A full backup (or, with ``base``, an incremental one) streamed from the
        pod through the pipeline into the store."""
        engine = node.engine
        assert isinstance(engine, Backups)
        meta: dict[str, str] = {}
        key = f"p/c/backups/{new_id()}.enc"
        if base is None:
            stream = engine.backup(node.ctx, node.ca_file, node.runner, meta)
        else:
            assert isinstance(engine, IncrementalBackups)
            stream = engine.backup_incremental(node.ctx, node.ca_file, node.runner, meta,
                                               base.meta)
        result = upload(self.store, key, stream, self.data_key)
        return StoredBackup(key, result["sha256"], meta)

    def ship_logs(self, node: ExecNode) -> list[StoredBackup]:
        """Close the current log, then ship each closed file from the pod into the
        store and remove it there, as the archiver does: the files it shipped,
        with their last commit times in their meta."""
        engine = node.engine
        assert isinstance(engine, Backups)
        engine.rotate_log(node.ctx, node.ca_file)
        shipped = []
        for path in engine.closed_logs(node.runner):
            last = engine.last_commit(node.ctx, node.runner, path)
            key = f"p/c/logs/{path.name}.enc"
            result = upload(self.store, key, node.runner.read_stream(path), self.data_key)
            shipped.append(StoredBackup(key, result["sha256"],
                                        {"last_commit": last.isoformat() if last else ""}))
            node.runner.remove_tree(path)
        return shipped

    def read(self, stored: StoredBackup) -> Iterator[bytes]:
        return download(self.store, stored.key, self.data_key, stored.sha256)

    def argv_items(self) -> list[str]:
        """Every argv item the exec stand-in was asked to run."""
        return [item for argv in self.standin.argvs() for item in argv]


@dataclass(frozen=True)
class Restore:
    """What a new node is restored from: a stored backup, shipped logs, a target."""

    chain: list[StoredBackup]  # a full backup, then any incrementals on it
    logs: list[StoredBackup]
    target: str | None
    service: Credentials  # a restored node keeps the accounts of its backup
    admin: Credentials
    # The streams themselves (the backup chain with its metas, then the logs by
    # name), as the restore workflow reads them, instead of ``chain`` and ``logs``.
    given: tuple[list[tuple[Iterable[bytes], Mapping[str, str]]],
                 list[tuple[str, Iterable[bytes]]]] | None = None


def restore_of(source: ExecNode, backup: StoredBackup | list[StoredBackup],
               logs: list[StoredBackup], target: str | None) -> Restore:
    chain = backup if isinstance(backup, list) else [backup]
    return Restore(chain, logs, target, source.ctx.service, source.ctx.admin)


def wait_healthy(node: ExecNode, local: LocalProvider, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = node.engine.health(node.ctx, node.ca_file, timeout=2)
        if health.ok:
            return
        assert local.is_running(node.ctx.node_id), health.detail
        assert time.monotonic() < deadline, health.detail
        time.sleep(0.05)


@contextmanager
def exec_world(prefix: str) -> Iterator[ExecWorld]:
    """Everything an exec-only node needs, for one module's tests."""
    box: dict[str, MockApi] = {}
    standin = StandInExec(pods=lambda: box["api"].objects("pods"))
    root = make_state_dir()
    hoard_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # 0700: Hoard's alone
    try:
        with mock_api(front=standin.front) as api:
            box["api"] = api
            provider = provider_for(kubeconfig_for(api.url, hoard_dir / "kubeconfig"), 30.0)
            local = LocalProvider(root / "nodes", "hoard-db")
            ca = CertificateAuthority(hoard_dir / "ca")
            yield ExecWorld(api, standin, provider, local, ca,
                            LocalStore(hoard_dir / "store"), hoard_dir)
    finally:
        remove_state_dir(root)
        shutil.rmtree(hoard_dir, ignore_errors=True)


def secret_free(world: ExecWorld, *creds: Credentials) -> None:
    """No password in any argv sent by exec, and no path on Hoard's side."""
    items = world.argv_items()
    assert items, "nothing ran by exec"
    for cred in creds:
        assert not [i for i in items if cred.password in i], "a password was in an argv"
    assert not [i for i in items if str(world.hoard_dir) in i], "a path on Hoard's side"


def pg_sql(node: ExecNode, query: str) -> list[tuple]:
    """Run `query` on a PostgreSQL stand-in node as its admin, over verified TLS."""
    creds = node.ctx.admin
    with psycopg.connect(host=node.ctx.host, port=node.ctx.port, dbname="app",
                         user=creds.user, password=creds.password, sslmode="verify-full",
                         sslrootcert=node.ca_file, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def record_cluster(svc: Any, node: ExecNode, project_id: str, cluster_id: str, name: str,
                   engine: str, **cluster: Any) -> None:
    """A one-node cluster on the Kubernetes provider and its node, as the API and
    a create record them, with the node's address and accounts."""
    from hoard.domain.status import ClusterStatus, NodeStatus
    from hoard.store import models

    with svc.store.session() as s:
        s.add(models.Project(id=project_id, name=name, quota_clusters=5, quota_nodes=5,
                             quota_storage_gb=50))
        s.flush()
        s.add(models.Cluster(
            id=cluster_id, project_id=project_id, name=name, engine=engine,
            version=node.ctx.version, size="nano", node_count=1, storage_gb=1,
            status=ClusterStatus.ACTIVE, provider="kubernetes",
            admin_user=node.ctx.admin.user, admin_password=svc.box.seal(node.ctx.admin.password),
            service_password=svc.box.seal(node.ctx.service.password), **cluster))
        s.flush()
        s.add(models.Node(id=node.ctx.node_id, cluster_id=cluster_id, ordinal=0, role="primary",
                          provider="kubernetes", status=NodeStatus.HEALTHY, limits={},
                          host=node.ctx.host, port=node.ctx.port))


@contextmanager
def exec_world_with_services(prefix: str) -> Iterator[tuple[ExecWorld, Any]]:
    """An exec world and Hoard's services on its emulator, the nodes'
    certificates issued by Hoard's own CA."""
    from tests.kube_support import emulated_services

    with exec_world(prefix) as served, emulated_services(served.api, prefix + "svc-") as svc:
        served.ca = svc.ca
        yield served, svc
