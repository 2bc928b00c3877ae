"""The Kubernetes provider: Hoard's nodes as pods on any Kubernetes cluster.

``names`` (what objects are called and labelled), ``render`` (the manifests),
``pods`` (why a pod waits), ``client`` (the API calls, on lightkube),
``execrunner`` (files and tools in a pod, by exec), ``pooler`` (a cluster's
connection pooler in a pod of its own), ``usage`` (a volume's use),
``provider`` (the Provider seam). Built from the settings by :func:`from_settings`,
which the provider registry calls.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hoard.providers.base import Provider
    from hoard.settings import Settings

__all__ = ["from_settings"]


def from_settings(settings: Settings) -> Provider | None:
    """Offered when ``HOARD_KUBECONFIG`` names a kubeconfig file, or ``in-cluster``
    (the pod's service account); None otherwise. Nothing is asked of the API
    server here: a Hoard starts whether or not the cluster answers."""
    if not settings.kubeconfig:
        return None
    # Imported only where the provider is on: the client library costs a fifth
    # of a second at every start of every Hoard process otherwise.
    from hoard.providers.kubernetes.client import Kube, config
    from hoard.providers.kubernetes.provider import KubernetesProvider, versions_from
    from hoard.providers.kubernetes.render import ControlPlane

    kube = Kube(config(settings.kubeconfig), settings.kubernetes_namespace)
    provider = KubernetesProvider(
        kube, versions_from(settings.kubernetes_versions),
        storage_class=settings.kubernetes_storage_class or None,
        registry=settings.kubernetes_registry,
        control_plane=ControlPlane(settings.kubernetes_control_namespace))
    provider.deadlines = replace(provider.deadlines, start=settings.kubernetes_start_deadline)
    return provider
