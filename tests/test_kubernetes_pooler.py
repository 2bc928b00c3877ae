"""A PostgreSQL cluster's pooler on the Kubernetes provider: its pod and
Service (valid for three Kubernetes versions' schemas), its files written into
the pod by exec, a real PgBouncer run from the pod's own command, reloaded
in place when its users change, filled again in a new pod, and removed.

No kubelet runs here (tests/kube_backup_support.py says what stands in): the
pooler's pod is written to the emulator as its StatefulSet would make it; its
container's command (the wrapper over the engine's declared PgBouncer) runs
as a local process under the node's OS account, as the pod runs under one
account, in a directory that plays its memory-backed working directory (the
provider's poolers are given that path); every command Hoard
sends the pod goes through the exec stand-in, as that account, there. The
server behind it is the node's real PostgreSQL, run the same way."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hoard.domain.nodes import Owner, ServiceSpec
from hoard.domain.pooler import POOLER_PORT
from hoard.engines.base import PoolerTarget
from hoard.engines.postgresql import PostgreSQL
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.pooler import READY, KubePoolers, pooler_service, pooler_set
from hoard.providers.processes import free_port
from tests.kube_backup_support import ExecNode, ExecWorld, exec_world
from tests.kube_support import NAMESPACE, PROJECT, running_pod, strictly_valid

ENGINE = PostgreSQL()
ADDRESS = "hoard-a0123456789ab.hoard.svc"


@dataclass
class Pooled:
    world: ExecWorld
    node: ExecNode
    workdir: Path
    port: int
    owner: Owner
    process: subprocess.Popen[bytes] | None = None  # the container's, once started

    def spec(self) -> ServiceSpec:
        """The engine's pooler, its users read from the server now."""
        ctx = self.node.ctx
        cert = self.world.ca.issue_server_cert("pooler", ["127.0.0.1"])
        target = PoolerTarget(("127.0.0.1", self.port), (ctx.host, ctx.port), "transaction",
                              50, cert.cert_pem, cert.key_pem, self.world.ca.cert_pem)
        return ENGINE.pooler_spec(ctx, target, ENGINE.pooler_users(ctx, self.node.ca_file))

    def ensure(self) -> bool:
        return self.world.provider.ensure_pooler(self.owner.cluster_id, ADDRESS, self.spec())

    def pod(self, uid: str) -> None:
        """The pooler's pod as its StatefulSet makes it, running (a new ``uid``: a
        new pod, without the note of the files it holds)."""
        template = pooler_set(self.owner, self.spec(), "hoard/postgresql:15", POOLER_PORT,
                              NAMESPACE, str(self.workdir))["spec"]["template"]
        running_pod(self.world.api, names.pooler_pod(self.owner.cluster_id), template,
                    ready=True, uid=uid)

    def container(self) -> subprocess.Popen[bytes]:
        """The pod's container: its command as rendered, run as the node's account."""
        command = pooler_set(self.owner, self.spec(), "i", POOLER_PORT, NAMESPACE,
                             str(self.workdir))["spec"]["template"]["spec"]["containers"][0][
            "command"]
        user = self.world.local.node_user(self.node.ctx.node_id)
        log = open(self.workdir.parent / "pooler.log", "ab")  # noqa: SIM115 (the child's)
        return subprocess.Popen(command, user=user.uid, group=user.gid, extra_groups=[],
                                stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def sql(self, user: str, password: str, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                             dbname="postgres", sslmode="require", connect_timeout=5,
                             autocommit=True) as conn:
            return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    with exec_world("hoard-kube-pooler-") as world, world.node(ENGINE) as node:
        top = Path(tempfile.mkdtemp(prefix="hoard-kube-pooler-run-", dir="/tmp"))
        top.chmod(0o711)  # the pooler's account passes through to its own directory
        workdir = top / "pooler"
        workdir.mkdir(mode=0o700)
        user = world.local.node_user(node.ctx.node_id)
        os.chown(workdir, user.uid, user.gid)
        world.provider.poolers = KubePoolers(world.provider.kube, NAMESPACE, str(workdir))
        world.standin.users[names.pooler_pod(node.ctx.node_id)] = (user.uid, user.gid)
        owner = Owner(PROJECT, node.ctx.node_id, standalone=True)  # the node's declaration's
        pooled = Pooled(world, node, workdir, free_port("127.0.0.1"), owner)
        try:
            yield pooled
        except BaseException:
            print((top / "pooler.log").read_text(errors="replace")
                  if (top / "pooler.log").exists() else "no pooler log")
            raise
        finally:
            world.provider.remove_pooler(owner.cluster_id)
            _stop(pooled)
            subprocess.run(["rm", "-rf", str(top)], check=False)


def _stop(pooled: Pooled) -> None:
    """Kill what the container left, if a test stopped before its own stop."""
    pid = pooled.workdir / ".pid"
    if pid.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid.read_text()), signal.SIGKILL)
    if pooled.process is not None and pooled.process.poll() is None:
        pooled.process.kill()
        pooled.process.wait(10)


def _files(pooled: Pooled) -> dict[str, int]:
    """The working directory's files, by name, with their inodes (a file written
    through the runner is staged and renamed: a new inode)."""
    return {p.name: p.stat().st_ino for p in pooled.workdir.iterdir()}


def _rewritten(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(name for name, ino in after.items() if before.get(name) != ino)


def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not met in time"
        time.sleep(0.1)


def test_the_pods_and_services_objects_are_valid_for_three_versions(pooled: Pooled) -> None:
    strictly_valid(pooler_set(pooled.owner, pooled.spec(), "hoard/postgresql:15",
                              POOLER_PORT, NAMESPACE))
    strictly_valid(pooler_service(pooled.owner, ADDRESS, POOLER_PORT, NAMESPACE))
    # The pod's interfaces, behind its Service.
    assert pooled.world.provider.listen_host(ADDRESS) == "0.0.0.0"  # noqa: S104


def test_the_pooler_starts_once_its_files_are_in_its_pod(pooled: Pooled) -> None:
    world, admin = pooled.world, pooled.node.ctx.admin
    pooled.process = pooled.container()  # waits for its files, as in a new pod
    time.sleep(0.5)
    assert pooled.process.poll() is None and _files(pooled) == {}
    pooled.pod("pod-1")
    assert pooled.ensure() is True  # made, and its first files written: a start
    sets, services = world.api.objects("statefulsets"), world.api.objects("services")
    assert names.pooler_object(pooled.owner.cluster_id) in sets
    assert services[names.address_service(ADDRESS)]["spec"]["selector"] == {
        names.POOLER: pooled.owner.cluster_id}
    _until(lambda: _answers(pooled, admin.user, admin.password))
    assert pooled.sql(admin.user, admin.password, "SELECT 6 * 7") == [(42,)]
    assert sorted(_files(pooled)) == sorted(
        [".pid", READY, "ca.crt", "pgbouncer.ini", "server.crt", "server.key", "users.txt"])


def _answers(pooled: Pooled, user: str, password: str) -> bool:
    try:
        return pooled.sql(user, password, "SELECT 1") == [(1,)]
    except psycopg.OperationalError:
        return False


def test_new_users_are_reloaded_in_place_and_nothing_else_is_written(pooled: Pooled) -> None:
    world, admin = pooled.world, pooled.node.ctx.admin
    calls, before = len(world.standin.argvs()), _files(pooled)
    assert pooled.ensure() is False  # nothing changed: nothing sent to the pod
    assert len(world.standin.argvs()) == calls
    pid = int((pooled.workdir / ".pid").read_text())
    with psycopg.connect(host="127.0.0.1", port=pooled.port, user=admin.user,
                         password=admin.password, dbname="postgres", sslmode="require",
                         autocommit=True) as kept:
        ctx = pooled.node.ctx  # a role made on the server, as Hoard's account API makes one
        with psycopg.connect(host=ctx.host, port=ctx.port, user=ctx.service.user,
                             password=ctx.service.password, dbname="postgres",
                             sslmode="verify-full", sslrootcert=pooled.node.ca_file,
                             autocommit=True) as server:
            server.execute("CREATE ROLE newcomer LOGIN PASSWORD 'newcomer-password-1'")
        assert pooled.ensure() is False  # a reload, not a start
        assert _rewritten(before, _files(pooled)) == ["users.txt"]
        _until(lambda: _answers(pooled, "newcomer", "newcomer-password-1"))
        assert kept.execute("SELECT 2").fetchall() == [(2,)]  # still connected
    assert int((pooled.workdir / ".pid").read_text()) == pid  # the same process


def test_the_pooler_follows_its_clusters_image(pooled: Pooled) -> None:
    world, cluster_id = pooled.world, pooled.owner.cluster_id
    kube, node_set = world.provider.kube, names.node_object(pooled.node.ctx.node_id)
    template = kube.get("StatefulSet", node_set).spec.template
    was = template.spec.containers[0].image
    upgraded = was.rsplit(":", 1)[0] + ":15.99"
    containers = [{"name": c.name, "image": upgraded} for c in template.spec.containers]
    kube.patch("StatefulSet", node_set, {"spec": {"template": {"spec": {
        "containers": containers}}}})  # the cluster's upgrade, as far as the pooler sees it
    calls, before = len(world.standin.argvs()), _files(pooled)
    try:
        assert pooled.ensure() is False  # the old pod runs until its set replaces it
        pooler = world.api.objects("statefulsets")[names.pooler_object(cluster_id)]
        assert [c["image"] for c in pooler["spec"]["template"]["spec"]["containers"]] == [
            upgraded]
        assert len(world.standin.argvs()) == calls and _files(pooled) == before
        assert pooled.ensure() is False  # and once there, left alone
        assert len(world.standin.argvs()) == calls
    finally:
        kube.patch("StatefulSet", node_set, {"spec": {"template": {"spec": {
            "containers": [{"name": c.name, "image": was}
                           for c in template.spec.containers]}}}})


def test_a_new_pod_gets_every_file_again_and_counts_as_a_start(pooled: Pooled) -> None:
    # The pod lost and not made again yet: a look waits briefly, then leaves it.
    pooled.world.provider.kube.kill_pod(names.pooler_pod(pooled.owner.cluster_id))
    before, began = _files(pooled), time.monotonic()
    assert pooled.ensure() is False
    assert time.monotonic() - began < 15 and _files(pooled) == before
    pooled.pod("pod-2")  # its StatefulSet made it again: no note of files
    before = _files(pooled)
    assert pooled.ensure() is True
    assert _rewritten(before, _files(pooled)) == sorted(
        [READY, "ca.crt", "pgbouncer.ini", "server.crt", "server.key", "users.txt"])


def test_removing_the_pooler_leaves_the_nodes_objects(pooled: Pooled) -> None:
    world, cluster_id = pooled.world, pooled.owner.cluster_id
    world.provider.remove_pooler(cluster_id)
    assert names.pooler_object(cluster_id) not in world.api.objects("statefulsets")
    assert names.address_service(ADDRESS) not in world.api.objects("services")
    assert names.node_object(pooled.node.ctx.node_id) in world.api.objects("statefulsets")
    world.provider.remove_pooler(cluster_id)  # idempotent


def test_the_pods_stop_signal_reaches_the_pooler(pooled: Pooled) -> None:
    assert pooled.process is not None and pooled.process.poll() is None
    pid = int((pooled.workdir / ".pid").read_text())
    pooled.process.send_signal(signal.SIGTERM)  # what the kubelet sends the container
    assert pooled.process.wait(15) is not None
    _until(lambda: not os.path.exists(f"/proc/{pid}"))
