"""The Kubernetes provider's logic against a mock API server that speaks HTTP
as Kubernetes does (kmock's emulator, ``tests/kube_support.py``): the
provider's own lightkube client, from a kubeconfig file, over loopback.

No controller runs in the mock: where Kubernetes would make or update a pod
(a StatefulSet's), the test writes it, through the API like a controller."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest
from lightkube.resources.core_v1 import Pod

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import Backend
from hoard.engines.base import Credentials, NodeContext
from hoard.engines.registry import ENGINES
from hoard.providers.base import Endpoint
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS, KubeError
from hoard.providers.kubernetes.pods import waiting_reason
from hoard.providers.kubernetes.provider import KubernetesProvider
from hoard.providers.osusers import current_user
from hoard.providers.runner import LocalRunner
from hoard.settings import Settings
from hoard.workflows.services import PROVIDERS
from tests.kube_support import (
    NAMESPACE,
    PLURALS,
    PROJECT,
    MockApi,
    api,
    kubeconfig_for,
    node_spec,
    provider,
)

CLUSTER = "0190a3b4-0000-7000-8000-0000000000c2"
NODE = "0190a3b4-0000-7000-8000-000000000011"

__all__ = ["api", "provider"]  # the emulator and provider fixtures


def pod_manifest(node_id: str, ready: bool, waiting: str | None = None) -> dict[str, Any]:
    """The pod a node's StatefulSet would make, as its kubelet reports it."""
    state: dict[str, Any] = ({"waiting": {"reason": waiting, "message": f"{waiting} (mock)"}}
                             if waiting else {"running": {}})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": names.pod(node_id), "namespace": NAMESPACE,
                         "labels": {names.NODE: node_id, names.CLUSTER: CLUSTER}},
            "spec": {"containers": [{"name": "server", "image": "hoard/redis:7.0"}]},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"name": "server", "ready": ready, "image": "i",
                                              "imageID": "", "restartCount": 0,
                                              "state": state}]}}


def controller(api: MockApi, method: str, node_id: str,
               body: dict[str, Any] | None = None) -> None:
    """Write the node's pod through the API, as the StatefulSet controller and the
    kubelet would (so watches see it)."""
    base = f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods"
    if method == "create":
        answer = httpx.post(base, json=body, timeout=5)
    else:
        answer = httpx.patch(f"{base}/{names.pod(node_id)}", json=body, timeout=5,
                             headers={"Content-Type": "application/merge-patch+json"})
    assert answer.status_code < 300, answer.text


def place_and_start(provider: KubernetesProvider, engine: str = "redis") -> list[str]:
    placement = provider.place(NODE, set(), 10, (), (), ("hoard-a0123456789ab.hoard.svc", 6379))
    assert (placement.host, placement.port) == ("hoard-a0123456789ab.hoard.svc", 6379)
    spec = node_spec(engine, NODE, CLUSTER, storage_gb=10)
    return provider.start(NODE, replace(spec, ports={"client": 6379}))


def test_registered_only_when_a_kubeconfig_is_given(api: MockApi, tmp_path: Path) -> None:
    assert PROVIDERS["kubernetes"](Settings(state_dir=tmp_path)) is None
    made = PROVIDERS["kubernetes"](Settings(state_dir=tmp_path, kubeconfig=str(
        kubeconfig_for(api.url, tmp_path / "kubeconfig"))))
    assert isinstance(made, KubernetesProvider)
    assert made.versions(ENGINES["postgresql"]) == ["15"]
    assert made.new_address().endswith(".hoard-databases.svc")  # the default namespace


def test_create_makes_every_object_labelled(api: MockApi, provider: KubernetesProvider) -> None:
    assert place_and_start(provider) == ["server"]
    made = {kind: set(api.objects(plural)) for kind, plural in PLURALS.items()}
    assert made["StatefulSet"] == {names.node_object(NODE)}
    assert made["PersistentVolumeClaim"] == {names.claim(NODE)}
    assert made["Service"] == {names.node_object(NODE), "hoard-a0123456789ab"}
    assert made["NetworkPolicy"] == made["PodDisruptionBudget"] == {names.cluster_object(CLUSTER)}
    for kind, plural in PLURALS.items():
        for obj in api.objects(plural).values():
            labels = obj["metadata"]["labels"]
            assert labels[names.PROJECT] == PROJECT and labels[names.CLUSTER] == CLUSTER, kind
    claim = api.objects("persistentvolumeclaims")[names.claim(NODE)]
    assert claim["spec"]["storageClassName"] == "hoard-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_start_is_idempotent_and_a_lost_pod_or_set_comes_back(
        api: MockApi, provider: KubernetesProvider) -> None:
    place_and_start(provider)
    controller(api, "create", NODE, pod_manifest(NODE, ready=True))
    assert provider.is_running(NODE)
    writes = len(api.handler["patch"]) + len(api.handler["post"])
    assert place_and_start(provider) == []  # all runs: nothing to start
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    assert sts["spec"]["replicas"] == 1
    # The second start only converged what it found (409 on create: a patch).
    assert len(api.handler["post"]) + len(api.handler["patch"]) > writes

    provider.kill(NODE)  # the pod is lost: its StatefulSet makes it again
    assert names.pod(NODE) not in api.objects("pods")
    # On its way, not exited (as between a holder's end and the server's pod):
    # nothing for Hoard to start, and the wait says why.
    assert provider.is_running(NODE)
    assert provider.waiting_for(NODE) == "no pod yet: its StatefulSet has not made it"
    assert place_and_start(provider) == []

    httpx.delete(f"{api.url}/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/"
                 f"{names.node_object(NODE)}", timeout=5)  # lost behind Hoard's back
    assert place_and_start(provider) == ["server"]
    assert names.node_object(NODE) in api.objects("statefulsets")


def test_scaling_adds_and_removes_one_node_leaving_its_siblings(
        api: MockApi, provider: KubernetesProvider) -> None:
    """Grow to three, then shrink by the middle one: only its objects go."""
    members = [f"0190a3b4-0000-7000-8000-00000000002{i}" for i in range(3)]
    for node in members:
        provider.place(node, set(), 10, ("patroni",))
        assert provider.start(node, node_spec("postgresql", node, CLUSTER, members=3)) == [
            "server"]
    assert set(api.objects("statefulsets")) == {names.node_object(n) for n in members}
    provider.destroy(members[1])
    assert set(api.objects("statefulsets")) == {names.node_object(members[0]),
                                               names.node_object(members[2])}
    assert set(api.objects("persistentvolumeclaims")) == {names.claim(members[0]),
                                                         names.claim(members[2])}
    assert api.objects("poddisruptionbudgets")  # the cluster's, still in force
    assert provider.node_ids() == {members[0], members[2]}


def test_a_node_that_changes_cluster_is_relabelled(api: MockApi,
                                                   provider: KubernetesProvider) -> None:
    """Promote-out: the same node, declared with another owner, moves its pod's
    labels (and so which Services and budget select it)."""
    place_and_start(provider)
    other = "0190a3b4-0000-7000-8000-0000000000c3"
    spec = node_spec("redis", NODE, other, storage_gb=10)
    assert provider.start(NODE, replace(spec, ports={"client": 6379})) == ["server"]
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    assert sts["spec"]["template"]["metadata"]["labels"][names.CLUSTER] == other
    assert sts["metadata"]["labels"][names.CLUSTER] == other


def test_stop_scales_to_zero_and_keeps_the_volume(api: MockApi,
                                                  provider: KubernetesProvider) -> None:
    place_and_start(provider)
    controller(api, "create", NODE, pod_manifest(NODE, ready=True))
    provider.stop(NODE)
    assert api.objects("statefulsets")[names.node_object(NODE)]["spec"]["replicas"] == 0
    assert provider.has_storage(NODE)
    httpx.delete(f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods/{names.pod(NODE)}", timeout=5)
    assert not provider.is_running(NODE)  # scaled to 0: nothing makes its pod
    assert place_and_start(provider) == ["server"]
    assert api.objects("statefulsets")[names.node_object(NODE)]["spec"]["replicas"] == 1


def test_storage_grows_by_expanding_the_claim(api: MockApi,
                                              provider: KubernetesProvider) -> None:
    place_and_start(provider)
    assert provider.grow_storage(NODE, 20).online  # no stop needed
    claim = api.objects("persistentvolumeclaims")[names.claim(NODE)]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    patches = len(api.handler["patch"])
    assert provider.grow_storage(NODE, 15).done  # never shrinks: nothing sent
    assert len(api.handler["patch"]) == patches
    # A later start keeps the grown size (the claim converges its labels only).
    place_and_start(provider)
    claim = api.objects("persistentvolumeclaims")[names.claim(NODE)]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_delete_leaves_nothing(api: MockApi, provider: KubernetesProvider) -> None:
    place_and_start(provider, "postgresql")
    controller(api, "create", NODE, pod_manifest(NODE, ready=True))
    provider.destroy(NODE)
    provider.remove_endpoint(CLUSTER)
    provider.destroy(NODE)  # again: every delete answers 404, which is fine
    provider.remove_endpoint(CLUSTER)
    for kind in KINDS:
        assert provider.kube.names(kind, {names.CLUSTER: CLUSTER}) == [], kind
        assert provider.kube.names(kind, {names.MANAGED_BY: names.MANAGER}) == [], kind
        assert api.objects(PLURALS[kind]) == {}, kind  # every object of the kind
    assert provider.node_ids() == set()
    assert not provider.has_storage(NODE)


def test_replicated_endpoints_select_by_role(api: MockApi,
                                             provider: KubernetesProvider) -> None:
    spec = node_spec("postgresql", NODE, CLUSTER, members=3)
    provider.place(NODE, set(), 10, ("patroni",))
    provider.start(NODE, spec)
    assert not provider.endpoint_running(CLUSTER)
    provider.ensure_endpoint(CLUSTER, [Backend(NODE, "h", 10000)], None,  # type: ignore[arg-type]
                             "", Endpoint("hoard-a00000000000a.hoard.svc", 5432,
                                          "hoard-a00000000000b.hoard.svc", 5432))
    assert provider.endpoint_running(CLUSTER)
    rw = api.objects("services")["hoard-a00000000000a"]
    assert rw["spec"]["selector"] == {names.CLUSTER: CLUSTER, names.ROLE: "primary"}
    assert rw["metadata"]["labels"][names.PROJECT] == PROJECT
    provider.remove_endpoint(CLUSTER)
    assert not provider.endpoint_running(CLUSTER)
    # The cluster's own objects went; the node's own name stays its node's.
    assert set(api.objects("services")) == {names.node_object(NODE)}
    assert api.objects("networkpolicies") == api.objects("poddisruptionbudgets") == {}


@pytest.mark.parametrize("how", ["answer", "event"])
def test_a_pod_slow_to_be_ready_says_why_and_a_410_lists_again(
        api: MockApi, provider: KubernetesProvider, how: str) -> None:
    """The watch's version is too old once: as an HTTP 410 answer, or (as a real
    API server says it) as an ERROR event carrying a 410 Status."""
    place_and_start(provider)
    controller(api, "create", NODE, pod_manifest(NODE, ready=False, waiting="ImagePullBackOff"))
    gone = {"left": 1}
    status = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410,
              "reason": "Expired", "message": "too old resource version"}

    def expired(request: Any) -> dict[str, Any] | None:
        if gone["left"]:
            gone["left"] -= 1
            if how == "answer":
                raise kmock.KubernetesError(status=410, reason="Expired",
                                            message="too old resource version")
            return {"type": "ERROR", "object": status}
        return None  # fall through to the emulator's watch

    api.react(kmock.action.WATCH, expired)
    reasons: list[str] = []
    waiting = threading.Event()

    def report(reason: str) -> None:
        reasons.append(reason)
        if len(reasons) >= 2:  # said before the 410, and again after listing anew
            waiting.set()

    def kubelet() -> None:
        assert waiting.wait(10)
        controller(api, "patch", NODE, pod_manifest(NODE, ready=True))

    helper = threading.Thread(target=kubelet)
    helper.start()
    provider.wait_ready(NODE, timeout=20, report=report)
    helper.join()
    assert reasons[0] == ("container server is waiting (ImagePullBackOff): "
                          "ImagePullBackOff (mock)")
    assert gone["left"] == 0 and len(api.handler[kmock.action.LIST]) >= 2
    assert provider.waiting_for(NODE) is None


def test_a_pod_never_ready_times_out_with_the_reason(api: MockApi,
                                                     provider: KubernetesProvider) -> None:
    place_and_start(provider)
    controller(api, "create", NODE, pod_manifest(NODE, ready=False, waiting="ErrImagePull"))
    assert provider.is_running(NODE)  # on its way: not a server that exited
    with pytest.raises(TimeoutError, match=r"ErrImagePull"):
        provider.wait_ready(NODE, timeout=1)


def test_an_unschedulable_pod_says_so() -> None:
    pod = Pod.from_dict({"metadata": {"name": "p"}, "status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient memory."}]}})
    assert waiting_reason(pod) == ("not scheduled: Unschedulable 0/3 nodes are available: "
                                   "3 Insufficient memory.")
    assert waiting_reason(None) == "no pod yet: its StatefulSet has not made it"


def test_errors_other_than_the_expected_ones_are_raised(api: MockApi,
                                                        provider: KubernetesProvider) -> None:
    api.react(kmock.action.CREATE, kmock.KubernetesError(status=403, reason="Forbidden",
                                                         message="no rights (mock)"))
    with pytest.raises(KubeError, match="403 Forbidden"):
        place_and_start(provider)


def test_what_kubernetes_does_not_offer_is_said(provider: KubernetesProvider) -> None:
    assert provider.pid(NODE) is None
    assert provider.address_taken("anything", 5432) is False
    provider.forget_dcs(CLUSTER, "/hoard/x")  # nothing made yet: nothing to forget


def test_a_node_listens_on_its_pods_own_addresses(provider: KubernetesProvider,
                                                  tmp_path: Path) -> None:
    """Clients reach a node by a Service's name, which no process of its pod holds:
    each engine's server listens on the pod's own interfaces instead (a local
    node, whose address is its own, listens on that address)."""
    host = f"hoard-a00000000000a.{NAMESPACE}.svc"
    runner = LocalRunner(tmp_path, current_user())
    versions = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}

    def listens(name: str, listen: str) -> str:
        ctx = NodeContext(node_id=NODE, version=versions[name], size=SIZES["nano"], host=host,
                          port=5432, service=Credentials("hoard", "x"),
                          admin=Credentials("admin", "y"), listen=listen)
        engine = ENGINES[name]
        if name == "mariadb":  # its settings go straight into its file
            engine.configure(ctx, runner)
            conf = (tmp_path / "conf" / "my.cnf").read_text()
            return re.search(r"^bind-address\s*=\s*(\S+)", conf, re.M).group(1)  # type: ignore[union-attr]
        key = {"postgresql": "listen_addresses", "redis": "bind"}[name]
        return engine.server_settings(ctx, runner)[key]  # type: ignore[attr-defined,no-any-return]

    for name in versions:
        assert listens(name, provider.listen_host(host)) == "0.0.0.0", name  # noqa: S104
        assert listens(name, "") == host, name
