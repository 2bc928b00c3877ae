"""The Kubernetes provider against a real cluster: runs only where
``HOARD_TEST_KUBECONFIG`` names a kubeconfig (its namespace:
``HOARD_TEST_KUBERNETES_NAMESPACE``, default ``hoard-conformance``, which must
exist, with the rights of deploy/kubernetes/rbac.yaml). Elsewhere it is
skipped, saying so.

What it shows: a node's objects are made and labelled by the API server
itself, and a delete leaves none of them (every kind listed by label); a held
node's pod takes files and tools by exec (the real kubelet, in the image's
own shell as uid 999). What it does not: a database answering in the pod (a
whole create, through the workflows)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

import pytest

from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS, Kube, config
from hoard.providers.kubernetes.provider import KubernetesProvider
from tests.kube_support import node_spec

KUBECONFIG = os.environ.get("HOARD_TEST_KUBECONFIG")
pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="HOARD_TEST_KUBECONFIG is not set: the live Kubernetes test needs a cluster "
           "(none runs on this machine); rendering and the provider's logic are tested "
           "against the schemas and a mock API server instead")


@pytest.fixture()
def provider() -> Iterator[KubernetesProvider]:
    assert KUBECONFIG is not None
    namespace = os.environ.get("HOARD_TEST_KUBERNETES_NAMESPACE", "hoard-conformance")
    yield KubernetesProvider(Kube(config(KUBECONFIG), namespace),
                             {"redis": ["7.0"]},
                             storage_class=os.environ.get("HOARD_TEST_KUBERNETES_STORAGE_CLASS"),
                             registry=os.environ.get("HOARD_TEST_KUBERNETES_REGISTRY", ""))


def _until(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Until ``done()``: a real cluster deletes in the background (a claim waits for
    its pod to be gone)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_create_then_delete_leaves_nothing(provider: KubernetesProvider) -> None:
    node, cluster = str(uuid.uuid4()), str(uuid.uuid4())
    labels = {names.CLUSTER: cluster}
    try:
        address = (provider.new_address(), 6379)
        provider.place(node, set(), 1, (), (), address)
        assert provider.start(node, node_spec("redis", node, cluster, storage_gb=1))
        for kind in ("StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy",
                     "PodDisruptionBudget"):
            assert provider.kube.names(kind, labels), kind
        assert provider.start(node, node_spec("redis", node, cluster, storage_gb=1)) in (
            [], ["server"])  # idempotent: the same declaration changes nothing
    finally:
        provider.destroy(node)
        provider.remove_endpoint(cluster)

    def gone() -> bool:
        return not any(provider.kube.names(kind, labels) for kind in KINDS) and \
            not provider.kube.names("Pod", {names.NODE: node})

    _until(gone, 120, "the node's objects were not all deleted")


def test_a_held_node_takes_files_and_tools_by_exec(provider: KubernetesProvider) -> None:
    node, cluster = str(uuid.uuid4()), str(uuid.uuid4())
    spec = node_spec("redis", node, cluster, storage_gb=1)
    try:
        provider.place(node, set(), 1, (), (), (provider.new_address(), 6379))
        provider.hold(node, spec)
        runner = provider.runner(node)  # waits for the holder's pod at its first command
        runner.write_file(PurePosixPath("conf/test.conf"), b"x" * 100_000, mode=0o640)
        assert runner.exists(PurePosixPath("conf/test.conf"))
        assert sum(map(len, runner.read_stream(PurePosixPath("conf/test.conf")))) == 100_000
        assert runner.run(["sh", "-c", 'printf %s "$HOARD_LIVE"'],
                          env={"HOARD_LIVE": "from stdin"}) == "from stdin"
        assert runner.list_dir(PurePosixPath("conf")) == ["test.conf"]
        runner.remove_tree(PurePosixPath("conf"))
        assert not runner.exists(PurePosixPath("conf"))
        assert not provider.is_running(node)  # the holder runs none of the node's processes
        assert provider.start(node, spec) == ["server"]
    finally:
        provider.destroy(node)
        provider.remove_endpoint(cluster)
