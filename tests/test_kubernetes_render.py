"""Every object the Kubernetes provider renders, for each engine, standalone and
as a 3-node cluster, is valid for three Kubernetes minor versions' official
schemas with unknown fields refused; and says what the design promises
(labels, placement, limits, a non-root pod, the probe, one open port)."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest

from hoard.domain.nodes import Owner
from hoard.providers.kubernetes import names, render
from tests.kube_support import K8S_VERSIONS, NAMESPACE, PROJECT, node_spec, strictly_valid

CLUSTER = "0190a3b4-0000-7000-8000-0000000000c1"
NODES = [f"0190a3b4-0000-7000-8000-00000000000{i}" for i in range(1, 4)]
ADDRESS = ("hoard-a0123456789ab.hoard.svc", 5432)
CONTROL_PLANE = render.ControlPlane()


def rendered(engine: str, members: int) -> list[dict[str, Any]]:
    """Everything the provider makes for one cluster of ``members`` nodes."""
    objects: list[dict[str, Any]] = []
    for node in NODES[:members]:
        spec = node_spec(engine, node, CLUSTER, members)
        address = ADDRESS if members == 1 else None
        objects += render.node_objects(node, spec, NAMESPACE, "hoard-ssd", address,
                                       CONTROL_PLANE)
        objects.append(render.tls_secret(node, spec.owner or Owner(PROJECT, CLUSTER),
                                         b"CERT", b"KEY", b"CA", NAMESPACE))
    owner = Owner(PROJECT, CLUSTER, standalone=members == 1)
    if members > 1:
        objects += render.endpoint_services(owner, ("hoard-a00000000000a.hoard.svc", 5432),
                                            ("hoard-a00000000000b.hoard.svc", 5432), NAMESPACE)
    objects.append(render.credentials_secret(owner, "admin", "s3cret", NAMESPACE))
    # Per-cluster objects are rendered once per node (each start makes sure of them).
    unique = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    return list(unique.values())


SHAPES = [(engine, members) for engine in ("postgresql", "mariadb", "redis")
          for members in (1, 3)]


@pytest.mark.parametrize(("engine", "members"), SHAPES)
def test_every_object_is_valid_for_three_kubernetes_versions(engine: str, members: int) -> None:
    objects = rendered(engine, members)
    kinds = {o["kind"] for o in objects}
    assert kinds == {"PersistentVolumeClaim", "Service", "StatefulSet", "NetworkPolicy",
                     "PodDisruptionBudget", "Secret"}
    for manifest in objects:
        strictly_valid(manifest)
    for node in NODES[:members]:  # what each node runs before its first start
        strictly_valid(render.holder_set(node, node_spec(engine, node, CLUSTER, members),
                                         NAMESPACE))


def test_the_check_is_strict_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown field fails, for every version: the check would catch a typo.
    With every connection refused, the check still runs: the schemas are the
    package's own files."""

    def no_network(*args: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    sts = next(o for o in rendered("postgresql", 1) if o["kind"] == "StatefulSet")
    strictly_valid(sts)
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    for version in K8S_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(sts, version, strict=True)
    assert set(K8S_VERSIONS) <= {v.rsplit(".", 1)[0]
                                 for v in kubernetes_validate.utils.all_versions()}


@pytest.mark.parametrize(("engine", "members"), SHAPES)
def test_objects_are_labelled_with_project_and_cluster(engine: str, members: int) -> None:
    for manifest in rendered(engine, members):
        labels = manifest["metadata"]["labels"]
        assert labels[names.MANAGED_BY] == "hoard"
        assert labels[names.PROJECT] == PROJECT, manifest["metadata"]["name"]
        assert labels[names.CLUSTER] == CLUSTER, manifest["metadata"]["name"]
        assert manifest["metadata"]["namespace"] == NAMESPACE


def _of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_a_node_is_a_non_root_pod_sized_spread_and_probed() -> None:
    spec = node_spec("postgresql", NODES[0], CLUSTER, 3)
    sts = render.stateful_set(NODES[0], spec, NAMESPACE)
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    server = pod["containers"][0]
    assert server["name"] == "server" and server["image"] == "hoard/postgresql:15"
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # small: 1 CPU, 2048 MiB; requests equal limits (Guaranteed QoS)
    assert server["resources"]["limits"] == server["resources"]["requests"]
    assert server["resources"]["limits"] == {"cpu": render.cpu(spec.resources.cpus),
                                             "memory": f"{spec.resources.memory_mb}Mi"}
    # pg_isready, as the engine declared it
    assert server["readinessProbe"]["exec"]["command"] == list(spec.readiness.argv)
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert term[0]["podAffinityTerm"]["labelSelector"] == {"matchLabels":
                                                           {names.CLUSTER: CLUSTER}}
    assert {m["mountPath"] for m in server["volumeMounts"]} >= {spec.volume.path}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == names.claim(NODES[0])
    # a replicated member's role label is its HA machinery's to set
    assert names.ROLE not in sts["spec"]["template"]["metadata"]["labels"]


def test_redis_without_a_probe_command_is_probed_on_its_named_port() -> None:
    spec = node_spec("redis", NODES[0], CLUSTER, 3)
    containers = render.stateful_set(NODES[0], spec, NAMESPACE)["spec"]["template"]["spec"][
        "containers"]
    assert [c["name"] for c in containers] == ["server", "sentinel"]
    assert containers[0]["readinessProbe"]["tcpSocket"] == {"port": "client"}
    assert {p["name"] for p in containers[0]["ports"]} == {"client", "sentinel"}


def test_the_volume_comes_from_the_storage_class_at_the_declared_size() -> None:
    claim = render.claim(NODES[0], 25, NAMESPACE, "hoard-ssd")
    assert claim["spec"]["storageClassName"] == "hoard-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "25Gi"
    assert "storageClassName" not in render.claim(NODES[0], 25, NAMESPACE, None)["spec"]


def test_services_select_the_primary_the_replicas_or_the_one_node() -> None:
    objects = rendered("postgresql", 3)
    by_endpoint = {s["metadata"]["labels"].get(names.ENDPOINT): s
                   for s in _of(objects, "Service")}
    assert by_endpoint["read-write"]["spec"]["selector"] == {names.CLUSTER: CLUSTER,
                                                             names.ROLE: "primary"}
    assert by_endpoint["read-only"]["spec"]["selector"] == {names.CLUSTER: CLUSTER,
                                                            names.ROLE: "replica"}
    assert by_endpoint["read-write"]["spec"]["ports"][0]["targetPort"] == "client"
    one = {s["metadata"]["labels"].get(names.ENDPOINT): s
           for s in _of(rendered("mariadb", 1), "Service")}["node"]
    assert one["metadata"]["name"] == ADDRESS[0].split(".")[0]
    assert one["spec"]["selector"] == {names.NODE: NODES[0]}
    assert one["spec"]["ports"][0]["port"] == ADDRESS[1]


def test_only_the_database_port_is_open_to_all() -> None:
    policy, = _of(rendered("redis", 3), "NetworkPolicy")
    open_to_all, peers = policy["spec"]["ingress"]
    assert open_to_all == {"ports": [{"protocol": "TCP", "port": "client"}]}
    assert "ports" not in peers and len(peers["from"]) == 2  # members, Hoard's workers
    budget, = _of(rendered("redis", 3), "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1


def test_a_node_without_an_owner_is_refused() -> None:
    spec = replace(node_spec("redis", NODES[0], CLUSTER), owner=None)
    with pytest.raises(ValueError, match="owner"):
        render.stateful_set(NODES[0], spec, NAMESPACE)
