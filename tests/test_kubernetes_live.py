"""The Kubernetes provider's own bookkeeping on a real cluster, beside the seam's
contract: runs only where ``HOARD_TEST_KUBECONFIG`` names a kubeconfig (see
tests/provider_conformance.py for the namespace, storage class and registry it
reads), and is skipped otherwise, saying so.

What the contract every provider meets does on a cluster (a held node's files
and tools by exec, start, kill, stop, storage growth, logs, destroy leaving
none of the node's objects) is tests/test_provider_conformance.py's
``kubernetes`` case. This file adds what only this provider has: every object
of a cluster, node and cluster-wide (policy, budget), is labelled with the
cluster by the API server itself, and a node's destroy with its cluster's
``remove_endpoint`` leaves nothing under the cluster's label."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from tests.kube_support import node_spec
from tests.provider_conformance import KUBECONFIG, NO_KUBECONFIG, Case, kubernetes_case, until

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason=NO_KUBECONFIG)
# What a standalone node's start makes: its own objects and its cluster's.
STANDALONE_KINDS = ("StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy",
                    "PodDisruptionBudget")


@pytest.fixture()
def case() -> Iterator[Case]:
    with kubernetes_case() as made:
        yield made


def test_a_clusters_objects_carry_its_label_and_go_with_it(case: Case) -> None:
    provider = case.provider
    kube = provider.kube  # type: ignore[attr-defined]
    node, cluster = str(uuid.uuid4()), str(uuid.uuid4())
    labels = {names.CLUSTER: cluster}
    try:
        provider.place(node, set(), 1, (), (), (provider.new_address(), 6379))
        # Objects only: the volume holds no configuration, so no server answers.
        assert provider.start(node, node_spec("redis", node, cluster, storage_gb=1))
        for kind in STANDALONE_KINDS:
            assert kube.names(kind, labels), kind
    finally:
        provider.destroy(node)
        provider.remove_endpoint(cluster)

    def left() -> list[str]:
        return [f"{kind} {name}" for kind in (*KINDS, "Pod") for name in kube.names(kind, labels)]

    until(lambda: not left(), case.settle, f"left under the cluster's label: {left()}")
