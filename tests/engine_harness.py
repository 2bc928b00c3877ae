"""Run one node of any engine directly on the local provider, without the API:
for engine-level tests of bootstrap, TLS, health and accounts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from hoard.domain.catalog import SIZES
from hoard.engines.base import Backups, Credentials, Engine, NodeContext, ParamValue
from hoard.providers.local import LocalProvider
from hoard.security.ca import CertificateAuthority
from hoard.security.secrets import generate_password
from tests.conftest import make_state_dir, remove_state_dir
from tests.serverlogs import print_logs


@dataclass
class RunningNode:
    engine: Engine
    ctx: NodeContext
    provider: LocalProvider
    ca_file: str

    def restart(self, **changes: Any) -> None:
        """Rewrite the configuration (with ``changes`` to the context) and restart."""
        self.ctx = replace(self.ctx, **changes)
        runner = self.provider.runner(self.ctx.node_id)
        self.engine.configure(self.ctx, runner)
        self.provider.stop(self.ctx.node_id)
        self.provider.start_process(self.ctx.node_id, self.engine.process(self.ctx, runner))
        wait_healthy(self)


def wait_healthy(node: RunningNode, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = node.engine.health(node.ctx, node.ca_file, timeout=2)
        if health.ok:
            return
        assert node.provider.is_running(node.ctx.node_id), health.detail
        assert time.monotonic() < deadline, health.detail
        time.sleep(0.05)


@dataclass(frozen=True)
class Restore:
    """What to restore a new node from (see ``Backups.restore``)."""

    backup: list[bytes]
    meta: dict[str, str]
    logs: list[tuple[str, list[bytes]]]
    target: str | None
    service: Credentials  # a restored node keeps the accounts of its backup
    admin: Credentials


@contextmanager
def running_node(engine: Engine, size: str = "nano", restore: Restore | None = None,
                 storage_gb: int = 1, parameters: Mapping[str, ParamValue] | None = None
                 ) -> Iterator[RunningNode]:
    """Bootstrap (or restore), configure, start and initialize one node (with a
    configuration's ``parameters`` from its first start); destroy it afterwards."""
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db")
    ca = CertificateAuthority(root / "ca")
    node_id = "node-" + secrets.token_hex(4)
    try:
        placement = provider.place(node_id, set(), storage_gb)
        ctx = NodeContext(
            node_id=node_id, version=engine.installed_versions()[0], size=SIZES[size],
            host=placement.host, port=placement.port,
            service=restore.service if restore else Credentials("hoard", generate_password()),
            admin=restore.admin if restore else Credentials("admin", generate_password()),
            parameters=dict(parameters or {}),
        )
        runner = provider.runner(node_id)
        provider.apply_limits(node_id, SIZES[size], storage_gb)
        if restore is None:
            engine.bootstrap(ctx, runner)
        else:
            assert isinstance(engine, Backups)
            engine.restore(ctx, runner, iter(restore.backup), restore.meta,
                           [(name, iter(data)) for name, data in restore.logs], restore.target)
        cert = ca.issue_server_cert(node_id, [placement.host, "localhost"])
        engine.install_tls(runner, cert.cert_pem, cert.key_pem)
        engine.configure(ctx, runner)
        provider.start_process(node_id, engine.process(ctx, runner))
        node = RunningNode(engine, ctx, provider, str(ca.cert_path))
        wait_healthy(node)
        if restore is not None:
            assert isinstance(engine, Backups)
            engine.finish_restore(ctx, node.ca_file, runner, restore.target)
        engine.initialize(ctx, node.ca_file)
        yield node
    except BaseException:
        print_logs(root)
        raise
    finally:
        provider.destroy(node_id)
        remove_state_dir(root)


def take_backup(node: RunningNode) -> tuple[list[bytes], dict[str, str]]:
    """A full backup of a running node, as the chunks the engine streamed."""
    engine = node.engine
    assert isinstance(engine, Backups)
    meta: dict[str, str] = {}
    chunks = list(engine.backup(node.ctx, node.ca_file, node.provider.runner(node.ctx.node_id),
                                meta))
    return chunks, meta


def ship_logs(node: RunningNode) -> list[tuple[str, list[bytes]]]:
    """Rotate and collect the node's closed log files (removing them, as Hoard does)."""
    engine = node.engine
    assert isinstance(engine, Backups)
    runner = node.provider.runner(node.ctx.node_id)
    engine.rotate_log(node.ctx, node.ca_file)
    shipped = []
    for path in engine.closed_logs(runner):
        shipped.append((path.name, list(runner.read_stream(path))))
        runner.remove_tree(path)
    return shipped
