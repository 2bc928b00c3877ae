"""A create on the Kubernetes provider whose pod cannot run says why in its
operation while it waits ("waiting: not scheduled: ...", an image pull
backing off) and fails at the start deadline naming the reason, leaving
nothing. Through the real API: a Hoard process (tests/conftest.py) with
``HOARD_KUBECONFIG`` naming kmock's emulator (tests/kube_support.py), which
runs no controllers: the test writes the pod the node's StatefulSet would
make, with the status a kubelet would report. A create whose held pod runs
goes through bootstrap by exec (the stand-in for the kubelet's exec in front of
the emulator, tests/kube_exec.py, on a temporary directory the test mounts as
the node's volume) and shows, in its start step, why its server's pod is not
ready."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoard.providers.kubernetes import names, render
from hoard.providers.kubernetes.client import KINDS
from hoard.providers.kubernetes.provider import KubernetesProvider
from tests.conftest import hoard_server, new_tenant, wait_operation
from tests.kube_exec import StandInExec
from tests.kube_support import (
    NAMESPACE,
    RESOURCES,
    UNSCHEDULABLE,
    MockApi,
    kubeconfig_for,
    made_set,
    make_pod,
    mock_api,
    provider_for,
)

DEADLINE = 6  # seconds: HOARD_KUBERNETES_START_DEADLINE
PULL_BACKING_OFF = {"phase": "Pending", "conditions": [
    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
    "containerStatuses": [{"name": "server", "ready": False, "image": "i", "imageID": "",
                           "restartCount": 0, "state": {"waiting": {
                               "reason": "ImagePullBackOff",
                               "message": 'Back-off pulling image "hoard/redis:7.0"'}}}]}


RUNNING = {"phase": "Running", "conditions": [
    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
    "containerStatuses": [{"name": "server", "ready": False, "image": "i", "imageID": "",
                           "restartCount": 0, "state": {"running": {}}}]}


@pytest.fixture(scope="module")
def api() -> Iterator[MockApi]:
    box: dict[str, MockApi] = {}
    standin = StandInExec(pods=lambda: box["api"].objects("pods"))
    with mock_api(front=standin.front) as running:
        box["api"] = running
        yield running


@pytest.fixture(scope="module")
def kubeconfig(api: MockApi, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig_for(api.url, tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(scope="module")
def tenant(kubeconfig: Path) -> Iterator[httpx.Client]:
    with hoard_server({"HOARD_KUBECONFIG": str(kubeconfig), "HOARD_KUBERNETES_NAMESPACE": NAMESPACE,
                       "HOARD_KUBERNETES_START_DEADLINE": str(DEADLINE),
                       "HOARD_KUBERNETES_VERSIONS": "redis=7.0"}) as server:
        with server.client() as admin:
            token = new_tenant(admin, "waits")
        with server.client(token) as client:
            yield client


@pytest.fixture(scope="module")
def provider(kubeconfig: Path) -> KubernetesProvider:
    """The provider's own client, to list what is left by label."""
    return provider_for(kubeconfig)


def shown_while_waiting(tenant: httpx.Client, op_id: str, words: str) -> dict[str, Any]:
    """The running step as the operation shows it once it names ``words``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        op = tenant.get(f"/v2/operations/{op_id}").json()
        running = [s for s in op["steps"] if s["status"] == "running"]
        if running and words in running[0].get("detail", ""):
            return dict(running[0])
        assert op["status"] == "running", (op["error"], op["steps"])
        time.sleep(0.05)
    raise AssertionError(f"the operation never showed {words!r} while running")


def nothing_left(api: MockApi, provider: KubernetesProvider, cluster_id: str,
                 node_id: str) -> None:
    """Every kind the provider makes, listed by label on the emulator, is gone; the
    pod the test made is then deleted as the garbage collector would once its
    StatefulSet is gone, and nothing at all is left."""
    for kind in KINDS:
        for labels in ({names.CLUSTER: cluster_id}, {names.NODE: node_id},
                       {names.MANAGED_BY: names.MANAGER}):
            assert provider.kube.names(kind, labels) == [], (kind, labels)
    provider.kube.delete("Pod", names.pod(node_id))
    for resource in RESOURCES:
        assert api.objects(resource.rsplit("/", 1)[1]) == {}, resource


@pytest.mark.parametrize(("status", "words"), [
    pytest.param(UNSCHEDULABLE, "not scheduled: Unschedulable 0/3 nodes are available: "
                 "3 Insufficient memory.", id="unschedulable"),
    pytest.param(PULL_BACKING_OFF, "container server is waiting (ImagePullBackOff): "
                 'Back-off pulling image "hoard/redis:7.0"', id="image-pull-backoff"),
])
def test_a_create_shows_why_its_pod_waits_and_fails_naming_it(
    tenant: httpx.Client, api: MockApi, provider: KubernetesProvider,
    status: dict[str, Any], words: str,
) -> None:
    made = tenant.post("/v2/clusters", json={"name": "waits", "engine": "redis",
                                             "size": "nano", "provider": "kubernetes"})
    assert made.status_code == 202, made.text
    op_id, cluster_id = made.json()["operation"]["id"], made.json()["cluster"]["id"]
    node_id = make_pod(api, status)
    step = shown_while_waiting(tenant, op_id, words)
    assert step["name"] == "place nodes"
    assert step["detail"] == f"waiting: node 0: {words}"
    op = wait_operation(tenant, op_id)
    assert op["status"] == "failed", op
    assert op["error"] == (f"the placed nodes were not ready within {DEADLINE}s: "
                           f"node 0: {words}")
    shown = tenant.get(f"/v2/clusters/{cluster_id}").json()
    assert (shown["status"], shown["status_reason"]) == ("FAILED", op["error"])
    bootstrap = next(s for s in op["steps"] if s["name"] == "bootstrap")
    assert bootstrap["status"] == "pending", op["steps"]  # no runner waited unseen
    nothing_left(api, provider, cluster_id, node_id)
    gone = tenant.delete(f"/v2/clusters/{cluster_id}")
    assert gone.status_code == 202, gone.text
    assert wait_operation(tenant, gone.json()["operation"]["id"])["status"] == "succeeded"


def test_a_create_through_bootstrap_shows_why_its_server_waits(
    tenant: httpx.Client, api: MockApi, provider: KubernetesProvider,
) -> None:
    """The held pod runs: bootstrap writes the node's files by exec, then the start
    step declares the server; its pod runs but its readiness probe never passes,
    and the start step says so while it waits and when it fails."""
    made = tenant.post("/v2/clusters", json={"name": "starts", "engine": "redis",
                                             "size": "nano", "provider": "kubernetes"})
    assert made.status_code == 202, made.text
    op_id, cluster_id = made.json()["operation"]["id"], made.json()["cluster"]["id"]
    with tempfile.TemporaryDirectory(prefix="hoard-k8s-volume-", dir="/tmp") as volume:
        node_id = make_pod(api, RUNNING, volume)
        declared = made_set(api, holding=False)  # bootstrap done: start declared the server
        holder = api.objects("pods")[names.pod(node_id)]
        assert tuple(holder["spec"]["containers"][0]["command"]) == render.HOLD
        # The controller replaces it: the holder ends (its grace period) first...
        holder["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        api.put("pods", names.pod(node_id), holder)
        shown_while_waiting(tenant, op_id, "the holder pod is being replaced by the server's")
        # ...then the server's pod takes its name.
        template = declared["spec"]["template"]
        api.put("pods", names.pod(node_id), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": names.pod(node_id), "namespace": NAMESPACE,
                         "labels": template["metadata"]["labels"]},
            "spec": template["spec"], "status": RUNNING})
        why = "the server is not ready yet (its readiness probe has not passed)"
        step = shown_while_waiting(tenant, op_id, why)
        assert step["name"] == "start"
        assert step["detail"].startswith(f"waiting: node 0 not answering yet: {why} (")
        op = wait_operation(tenant, op_id)
        assert (Path(volume) / "conf").is_dir(), "bootstrap wrote nothing by exec"
    assert op["status"] == "failed", op
    assert op["error"].startswith(f"the first node was not ready within {DEADLINE}s: "
                                  f"node 0 not answering yet: {why} ("), op["error"]
    assert [s["status"] for s in op["steps"][:2]] == ["done", "done"], op["steps"]
    nothing_left(api, provider, cluster_id, node_id)
    gone = tenant.delete(f"/v2/clusters/{cluster_id}")
    assert gone.status_code == 202, gone.text
    assert wait_operation(tenant, gone.json()["operation"]["id"])["status"] == "succeeded"
