"""Real Patroni on its Kubernetes DCS: three PostgreSQL 15 members whose leader
lock, configuration and role labels live in the API server (here the
versioned emulator, tests/kube_emulator.py: kmock's, with resource versions,
compare-and-set and label selectors), configured exactly as the Kubernetes
provider configures them (``KubernetesProvider.dcs()``, the engine's
``patroni_config``).

No kubelet runs here, so each member's pod is played by two stand-ins: its
Pod object, written to the emulator as its StatefulSet would make it (Hoard's
labels, the pod's address), and its container's process, run by the local
provider under the node's own account from the declared argv, with what the
image and the pod would give it made local: the image's Patroni
(``/usr/bin/patroni`` there, Patroni 4.1.5 from PyPI) at the path ``make
setup`` installs the same version to, ``$(POD_IP)`` expanded to the member's
address as a kubelet expands it, and a kubeconfig naming the emulator where
a pod has its service account. The read-write and read-only Services are
the provider's own renderings; which pods they select is matched here by
label, as the API server's endpoints controller would."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hoard.domain.dcs import KubernetesDcs
from hoard.domain.nodes import Owner, ProcessSpec
from hoard.engines.base import NodeContext
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.postgresql.ha import KUBERNETES_RETRY_TIMEOUT, KUBERNETES_TTL, PATRONI
from hoard.ids import new_id
from hoard.providers.kubernetes import names, render
from hoard.providers.kubernetes.provider import KubernetesProvider
from tests.ha_harness import HaCluster, running_cluster
from tests.kube_support import NAMESPACE, PROJECT, MockApi, kubeconfig_for, mock_api, provider_for

# Where `make setup` installs the Patroni the PostgreSQL image carries
# (images/postgresql/Dockerfile): the same version, run by Debian's Python.
PATRONI_IN_IMAGE = Path("/opt/hoard/patroni-4.1.5/bin/patroni")
RW_HOST, RO_HOST = "hoard-a00000000000a.hoard.svc", "hoard-a00000000000b.hoard.svc"


@dataclass
class World:
    api: MockApi
    k8s: KubernetesProvider
    dcs: KubernetesDcs
    cluster: HaCluster


def _pod(dcs: KubernetesDcs, cluster_id: str, node_id: str, ip: str) -> dict[str, Any]:
    """The member's pod as its StatefulSet makes it: Hoard's labels, no role yet."""
    labels = names.node_labels(node_id) | names.owner_labels(
        Owner(PROJECT, cluster_id, standalone=False))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": dcs.member_name(node_id), "namespace": NAMESPACE,
                         "labels": labels},
            "spec": {"containers": [{"name": "server", "image": "hoard/postgresql:15"}]},
            "status": {"phase": "Running", "podIP": ip}}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    assert PATRONI_IN_IMAGE.exists(), f"{PATRONI_IN_IMAGE} is missing: run `make setup`"
    with mock_api() as api, tempfile.TemporaryDirectory(prefix="hoard-kube-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)  # the members' accounts read the kubeconfig
        kubeconfig = kubeconfig_for(api.url, Path(tmp) / "kubeconfig")
        kubeconfig.chmod(0o644)
        k8s = provider_for(kubeconfig)
        dcs = k8s.dcs()
        assert isinstance(dcs, KubernetesDcs)
        cluster_id, node_ids = new_id(), [new_id() for _ in range(3)]
        for node_id in node_ids:
            api.put("pods", dcs.member_name(node_id), _pod(dcs, cluster_id, node_id, "127.0.0.1"))
        owner = Owner(PROJECT, cluster_id, standalone=False)
        for manifest in render.endpoint_services(owner, (RW_HOST, 5432), (RO_HOST, 5432),
                                                 NAMESPACE):
            k8s.kube.ensure(manifest)

        def in_pod(ctx: NodeContext, spec: ProcessSpec) -> ProcessSpec:
            argv = [str(PATRONI_IN_IMAGE) if arg == PATRONI else arg for arg in spec.argv]
            env = {k: v.replace("$(POD_IP)", "127.0.0.1") for k, v in spec.env.items()}
            env |= {"KUBECONFIG": str(kubeconfig), "PATRONI_KUBERNETES_CONTEXT": "mock"}
            return replace(spec, argv=argv, env=env)

        with running_cluster(PostgreSQL(), dcs=dcs, ids=(cluster_id, node_ids),
                             adapt=in_pod) as cluster:
            yield World(api, k8s, dcs, cluster)


def _roles(w: World) -> dict[str, str | None]:
    """Each member's role label on its pod, by node id."""
    pods = w.api.objects("pods")
    return {n: (pods[w.dcs.member_name(n)]["metadata"].get("labels") or {}).get(names.ROLE)
            for n in (m.node_id for m in w.cluster.topo.members)}


def _selected(w: World, host: str) -> set[str]:
    """The node ids a Service sends connections to: pods its selector matches
    that are ready, here those whose member's processes run (a killed member's
    pod keeps its labels until its Patroni starts again and changes them;
    the API server's endpoints controller leaves a pod out while it is not
    ready)."""
    selector = w.api.objects("services")[names.address_service(host)]["spec"]["selector"]
    matched = {w.dcs.node_id(name) for name, pod in w.api.objects("pods").items()
               if selector.items() <= (pod["metadata"].get("labels") or {}).items()}
    return {n for n in matched if w.cluster.provider.is_running(n)}


def _settled(w: World, timeout: float = 60) -> str:
    """Until one member is the healthy primary, its pod alone is labelled the
    leader and every other pod a replica; the primary's node id."""
    def one() -> str | None:
        primary = w.cluster.primary()
        roles = _roles(w)
        wanted = {n: names.LEADER if n == primary else names.FOLLOWER for n in roles}
        return primary if primary and roles == wanted else None
    found = w.cluster.wait_for(one, timeout, "one primary, its pod alone labelled the leader")
    assert isinstance(found, str)
    return found


def _connect(w: World, node_id: str) -> psycopg.Connection:
    """The tenant's admin account on database "app", TLS verified."""
    ctx = w.cluster.ctx(node_id)
    return psycopg.connect(host=ctx.host, port=ctx.port, user=ctx.admin.user,
                           password=ctx.admin.password, dbname="app", sslmode="verify-full",
                           sslrootcert=w.cluster.ca_file, connect_timeout=5, autocommit=True)


def _rows(w: World, node_id: str) -> list[int]:
    with _connect(w, node_id) as conn:
        return [r[0] for r in conn.execute("SELECT n FROM kept ORDER BY n").fetchall()]


def _write(w: World, node_id: str, values: range) -> None:
    with _connect(w, node_id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n int PRIMARY KEY)")
        for n in values:
            conn.execute("INSERT INTO kept VALUES (%s)", (n,))


def test_patroni_keeps_its_lock_in_the_api_and_labels_the_leaders_pod(world: World) -> None:
    primary = _settled(world)
    assert _selected(world, RW_HOST) == {primary}
    assert _selected(world, RO_HOST) == {m.node_id for m in world.cluster.topo.members} - {
        primary}
    cluster_id = world.cluster.topo.cluster_id
    lock = world.api.objects("endpoints")[cluster_id]
    assert lock["metadata"]["annotations"]["leader"] == world.dcs.member_name(primary)
    assert lock["metadata"]["labels"] == {names.MANAGED_BY: names.MANAGER,
                                          names.CLUSTER: cluster_id}
    assert lock["subsets"][0]["ports"] == [{"name": "postgresql",
                                             "port": world.cluster.ctx(primary).port}]
    # The lock is renewed (a compare-and-set on its resource version) every loop.
    first = int(lock["metadata"]["resourceVersion"])
    world.cluster.wait_for(
        lambda: int(world.api.objects("endpoints")[cluster_id]["metadata"]["resourceVersion"])
        > first, 10, "the leader lock renewed")
    # The cluster-wide configuration, kept in the API too, with the lock's timing
    # Patroni 4 runs (it raises less to these).
    config = json.loads(world.api.objects("endpoints")[f"{cluster_id}-config"]["metadata"][
        "annotations"]["config"])
    assert (config["ttl"], config["retry_timeout"]) == (KUBERNETES_TTL,
                                                       KUBERNETES_RETRY_TIMEOUT)


def _sync_standbys(w: World) -> list[str]:
    return [s.node_id for s in w.cluster.states() if s.detail.startswith("synchronous")]


def test_durability_and_a_switchover_go_through_the_api_server(world: World) -> None:
    """Hoard's own calls to Patroni: a durability change (the cluster-wide
    configuration, a compare-and-set on its Endpoints) and a planned switchover
    to a member that is not the synchronous standby; the pods' labels and the
    read-write Service follow."""
    cluster = world.cluster
    primary = _settled(world)
    sync = replace(cluster.topo, durability="sync")
    for ctx in cluster.ctxs:
        cluster.ha.configure_member(ctx, sync, cluster.provider.runner(ctx.node_id))
    cluster.wait_for(lambda: len(_sync_standbys(world)) == 1, 30, "a synchronous standby")
    cluster_id = cluster.topo.cluster_id
    config = json.loads(world.api.objects("endpoints")[f"{cluster_id}-config"]["metadata"][
        "annotations"]["config"])
    assert config["synchronous_mode"] is True
    standby = _sync_standbys(world)[0]
    target = next(c.node_id for c in cluster.ctxs if c.node_id not in (primary, standby))
    cluster.ha.switchover(cluster.ctxs, sync, cluster.ca_file, target)
    assert _settled(world) == target
    assert _selected(world, RW_HOST) == {target}
    for ctx in cluster.ctxs:
        cluster.ha.configure_member(ctx, cluster.topo, cluster.provider.runner(ctx.node_id))
    cluster.wait_for(lambda: not _sync_standbys(world) and all(
        s.healthy for s in cluster.states()), 30, "asynchronous again")


def test_a_lost_leader_is_replaced_and_the_read_write_service_follows(world: World) -> None:
    cluster = world.cluster
    old = _settled(world)
    _write(world, old, range(1, 101))
    cluster.wait_for(lambda: all(_rows(world, m.node_id) == list(range(1, 101))
                                 for m in cluster.topo.members if m.node_id != old),
                     30, "every replica has the rows")
    began = time.monotonic()
    cluster.kill(old)  # kill -9 of the pod's processes: the lock is not released
    new = cluster.wait_for(lambda: (p := cluster.primary()) != old and p, 60,
                           "another member promoted")
    assert isinstance(new, str)
    print(f"promoted after {time.monotonic() - began:.1f}s")
    cluster.wait_for(lambda: _roles(world)[new] == names.LEADER, 10,
                     "the new primary's pod labelled the leader")
    assert _selected(world, RW_HOST) == {new}
    assert _rows(world, new) == list(range(1, 101))
    _write(world, new, range(101, 111))
    cluster.restart(old)  # its pod's container restarted, as the kubelet would
    # It may run on its old timeline for a moment before Patroni rewinds it
    # (its pod unlabelled meanwhile): first every row, then the labels.
    cluster.wait_for(lambda: _rows(world, old) == list(range(1, 111)), 60,
                     "the old leader rejoined as a replica with every row")
    assert _settled(world) == new
    assert _selected(world, RW_HOST) == {new}
    assert old in _selected(world, RO_HOST)


def test_forget_dcs_leaves_nothing_patroni_made(world: World) -> None:
    cluster = world.cluster
    for member in cluster.topo.members:
        cluster.provider.stop(member.node_id)
    cluster_id = cluster.topo.cluster_id
    assert {f"{cluster_id}", f"{cluster_id}-config"} <= set(world.api.objects("endpoints"))
    world.k8s.forget_dcs(cluster_id, cluster.ha.dcs_prefix(cluster_id))
    assert world.api.objects("endpoints") == {}
    assert set(world.api.objects("services")) == {names.address_service(RW_HOST),
                                                  names.address_service(RO_HOST)}


VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create",
         "UPDATE": "patch"}  # kmock's actions; PUT and collection DELETEs have none


def _verb(call: Any) -> str:
    if call.action is not None:
        return VERBS[call.action.name]
    return {"PUT": "update", "DELETE": "deletecollection"}.get(str(call.method.value).upper(),
                                                              str(call.method.value))


def test_patroni_called_nothing_the_database_pods_role_does_not_grant(world: World) -> None:
    """Every call the members' Patroni made (told apart by its User-Agent) is
    one ``render.DATABASE_RIGHTS`` grants, the Role deploy/kubernetes gives
    the database pods' account: on a real cluster a missing verb would stop
    the lock's renewal."""
    made = {((call.resource.group or ""), call.resource.plural, _verb(call))
            for call in world.api.handler.calls()
            if call.headers.get("User-Agent", "").startswith("Patroni")
            and call.resource is not None}
    assert made, "no call of Patroni's was seen"
    granted = {(group, resource, verb) for (group, resource), verbs in
               render.DATABASE_RIGHTS.items() for verb in verbs}
    assert made <= granted, made - granted
    # What it was seen to use: the lock and configuration, its pod's labels, its
    # -config Service.
    assert {("", "endpoints", "create"), ("", "endpoints", "patch"),
            ("", "endpoints", "watch"), ("", "pods", "patch"), ("", "pods", "watch"),
            ("", "services", "create")} <= made
