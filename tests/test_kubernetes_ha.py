"""The Kubernetes provider's HA machinery against kmock's emulator: the DCS it
offers Patroni, the Secrets it publishes and deletes, the role labels it sets
for Sentinel and Galera (and so which pods the read-write Service selects:
no endpoints controller runs, so the match is computed here by label), and
Patroni's objects forgotten with the cluster. Real Patroni on the same
emulator: tests/test_kubernetes_patroni.py."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import httpx

from hoard.domain.dcs import KubernetesDcs
from hoard.domain.nodes import Backend, NodeSecrets, Owner
from hoard.providers.base import Endpoint
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from hoard.providers.kubernetes.provider import KubernetesProvider
from tests.kube_support import (
    NAMESPACE,
    PLURALS,
    PROJECT,
    MockApi,
    api,
    node_spec,
    provider,
)

CLUSTER = "0190a3b4-0000-7000-8000-0000000000c3"
NODES = [f"0190a3b4-0000-7000-8000-00000000002{i}" for i in range(3)]
RW = Endpoint("hoard-a00000000000a.hoard.svc", 5432, "hoard-a00000000000b.hoard.svc", 5432)

__all__ = ["api", "provider"]  # the emulator and provider fixtures


def post(api: MockApi, plural: str, body: dict[str, Any]) -> None:
    """Write an object through the API, as a controller or Patroni would."""
    answer = httpx.post(f"{api.url}/api/v1/namespaces/{NAMESPACE}/{plural}", json=body,
                        timeout=5)
    assert answer.status_code < 300, answer.text


def cluster_of_three(api: MockApi, provider: KubernetesProvider, engine: str) -> None:
    """Three members placed and started, their pods made as their StatefulSets would
    (with the template's labels), and the cluster's endpoint Services."""
    for node in NODES:
        provider.place(node, set(), 10, ("sentinel",) if engine == "redis" else ("patroni",))
        provider.start(node, node_spec(engine, node, CLUSTER, members=3))
        template = api.objects("statefulsets")[names.node_object(node)]["spec"]["template"]
        post(api, "pods", {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": names.pod(node), "namespace": NAMESPACE,
                                        "labels": template["metadata"]["labels"]},
                           "spec": {"containers": [{"name": "server", "image": "i"}]}})
    provider.ensure_endpoint(CLUSTER, [Backend(n, "h", 10000) for n in NODES],
                             None, "", RW)  # type: ignore[arg-type]


def selected(api: MockApi, service: str) -> set[str]:
    """The pods a Service's selector matches, as Kubernetes would match them."""
    selector = api.objects("services")[service]["spec"]["selector"]
    return {name for name, pod in api.objects("pods").items()
            if selector.items() <= (pod["metadata"].get("labels") or {}).items()}


def test_the_dcs_is_the_api_server_with_hoards_labels(provider: KubernetesProvider) -> None:
    dcs = provider.dcs()
    assert isinstance(dcs, KubernetesDcs)
    assert dcs.namespace == NAMESPACE
    assert dict(dcs.labels) == {names.MANAGED_BY: names.MANAGER}
    assert (dcs.scope_label, dcs.role_label) == (names.CLUSTER, names.ROLE)
    assert (dcs.leader_label_value, dcs.follower_label_value) == ("primary", "replica")
    assert dcs.member_name(NODES[0]) == names.pod(NODES[0])
    assert dcs.node_id(names.pod(NODES[0])) == NODES[0]


def test_patroni_pods_get_the_database_account_and_its_token(
        api: MockApi, provider: KubernetesProvider) -> None:
    provider.place(NODES[0], set(), 10, ("patroni",))
    spec = node_spec("postgresql", NODES[0], CLUSTER, members=3)
    provider.start(NODES[0], replace(spec, uses_dcs=True))
    pod = api.objects("statefulsets")[names.node_object(NODES[0])]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == names.DATABASE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True
    assert pod["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    provider.place(NODES[1], set(), 10, ("sentinel",))
    provider.start(NODES[1], node_spec("redis", NODES[1], CLUSTER, members=3))
    pod = api.objects("statefulsets")[names.node_object(NODES[1])]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # Sentinel never calls the API


def test_secrets_are_published_mounted_and_gone_with_the_cluster(
        api: MockApi, provider: KubernetesProvider) -> None:
    cluster_of_three(api, provider, "redis")
    owner = Owner(PROJECT, CLUSTER, standalone=False)
    for node in NODES:
        provider.publish_secrets(node, owner, NodeSecrets(b"CERT-" + node.encode(), b"KEY",
                                                          b"CA", "hoard", "pw-1"))
    provider.publish_secrets(NODES[0], owner, NodeSecrets(b"RENEWED", b"KEY", b"CA",
                                                          "hoard", "pw-1"))
    secrets = api.objects("secrets")
    assert set(secrets) == {names.tls_secret(n) for n in NODES} | {
        names.credentials_secret(CLUSTER)}
    tls = secrets[names.tls_secret(NODES[0])]
    assert base64.b64decode(tls["data"]["tls.crt"]) == b"RENEWED"  # replaced, not kept
    assert tls["metadata"]["labels"][names.CLUSTER] == CLUSTER
    assert base64.b64decode(secrets[names.credentials_secret(CLUSTER)]["data"]["password"]) \
        == b"pw-1"
    pod = api.objects("statefulsets")[names.node_object(NODES[0])]["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert mounted == {names.tls_secret(NODES[0]), names.credentials_secret(CLUSTER)}
    provider.remove_endpoint(CLUSTER)
    assert set(api.objects("secrets")) == {names.tls_secret(n) for n in NODES}  # the nodes'
    for node in NODES:
        provider.destroy(node)
    for kind in KINDS:
        assert provider.kube.names(kind, {names.CLUSTER: CLUSTER}) == [], kind
        assert api.objects(PLURALS[kind]) == {}, kind  # every object of the kind


def test_a_failover_moves_the_read_write_service(api: MockApi,
                                                 provider: KubernetesProvider) -> None:
    """Sentinel (or Galera) reports roles; the provider labels the pods, and the
    read-write Service's selection follows the primary."""
    cluster_of_three(api, provider, "redis")
    rw, ro = names.address_service(RW.rw_host), names.address_service(RW.ro_host)
    assert selected(api, rw) == set()  # nobody labelled yet
    first = {NODES[0]: "primary", NODES[1]: "replica", NODES[2]: "replica"}
    provider.set_roles(CLUSTER, first)
    assert selected(api, rw) == {names.pod(NODES[0])}
    assert selected(api, ro) == {names.pod(NODES[1]), names.pod(NODES[2])}
    # The same roles again: nothing is patched.
    patches: list[str] = []
    real = provider.kube.patch
    provider.kube.patch = lambda kind, name, body: (patches.append(name),  # type: ignore
                                                    real(kind, name, body))[1]
    provider.set_roles(CLUSTER, first)
    assert patches == []
    # Failover: node 1 is promoted, node 0 comes back as a replica.
    provider.set_roles(CLUSTER, {NODES[0]: "replica", NODES[1]: "primary",
                                 NODES[2]: "replica"})
    assert sorted(patches) == sorted([names.pod(NODES[0]), names.pod(NODES[1])])
    assert selected(api, rw) == {names.pod(NODES[1])}
    assert selected(api, ro) == {names.pod(NODES[0]), names.pod(NODES[2])}
    assert set(api.objects("pods")) == {names.pod(n) for n in NODES}  # relabelled, not replaced
    # A member with no role ("" while it is down) keeps its label; another cluster's
    # pods are never touched.
    provider.set_roles("0190a3b4-0000-7000-8000-0000000000ff", {NODES[0]: "primary"})
    assert selected(api, rw) == {names.pod(NODES[1])}


def test_forget_dcs_deletes_what_patroni_made(api: MockApi,
                                              provider: KubernetesProvider) -> None:
    cluster_of_three(api, provider, "postgresql")
    patroni = {names.MANAGED_BY: names.MANAGER, names.CLUSTER: CLUSTER}
    other = {names.MANAGED_BY: names.MANAGER, names.CLUSTER: "0190a3b4-0000-7000-8000-0000000000ff"}
    for name, labels in ((CLUSTER, patroni), (f"{CLUSTER}-config", patroni),
                         (f"{CLUSTER}-sync", patroni), ("another", other)):
        post(api, "endpoints", {"apiVersion": "v1", "kind": "Endpoints",
                                "metadata": {"name": name, "namespace": NAMESPACE,
                                             "labels": labels}})
    post(api, "services", {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": f"{CLUSTER}-config", "namespace": NAMESPACE,
                                        "labels": patroni},
                           "spec": {"clusterIP": "None"}})
    provider.forget_dcs(CLUSTER, "/hoard/x/")
    provider.forget_dcs(CLUSTER, "/hoard/x/")  # again: nothing left, fine
    assert set(api.objects("endpoints")) == {"another"}
    # Patroni's -config Service went; Hoard's own (nodes', endpoints') stay.
    assert f"{CLUSTER}-config" not in api.objects("services")
    assert {names.node_object(n) for n in NODES} <= set(api.objects("services"))
    assert provider.endpoint_running(CLUSTER)
