"""The Kubernetes provider's own bookkeeping, beside the seam's contract: on a
real cluster where ``HOARD_TEST_KUBECONFIG`` names a kubeconfig (see
tests/provider_conformance.py for the namespace, storage class and registry it
reads; skipped otherwise, saying so), and on kmock's emulator always (marked
``kubernetes-emulator``: objects only, it runs no pods).

What the contract every provider meets does on a cluster (a held node's files
and tools by exec, start, kill, stop, storage growth, logs, destroy leaving
none of the node's objects) is tests/test_provider_conformance.py's
``kubernetes`` case. This file adds what only this provider has: every object
of a cluster, node and cluster-wide (policy, budget), carries the cluster's
label, and a node's destroy with its cluster's ``remove_endpoint`` leaves
nothing under it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from tests.kube_support import NAMESPACE, kubeconfig_for, mock_api, node_spec
from tests.provider_conformance import KUBECONFIG, NO_KUBECONFIG, Case, kubernetes_case, until

# What a standalone node's start makes: its own objects and its cluster's.
STANDALONE_KINDS = ("StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy",
                    "PodDisruptionBudget")


@pytest.fixture(params=[
    pytest.param("kubernetes-emulator", id="kubernetes-emulator"),
    pytest.param("kubernetes", id="kubernetes",
                 marks=pytest.mark.skipif(not KUBECONFIG, reason=NO_KUBECONFIG)),
])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    if request.param == "kubernetes":
        with kubernetes_case() as made:
            yield made
        return
    with mock_api() as api, kubernetes_case(str(kubeconfig_for(api.url, tmp_path / "kube")),
                                            NAMESPACE, "kubernetes-emulator") as made:
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
