"""Names and labels of what the Kubernetes provider makes: derived from ids, so
every object is found again from a node id or a cluster id alone, and every
one carries the labels a delete lists by."""

from __future__ import annotations

import re

from hoard.domain.nodes import Owner

PREFIX = "hoard.dev"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "hoard"
PROJECT = f"{PREFIX}/project"
CLUSTER = f"{PREFIX}/cluster"
NODE = f"{PREFIX}/node"
ROLE = f"{PREFIX}/role"  # primary | replica: what the read-write and read-only Services select
ENDPOINT = f"{PREFIX}/endpoint"  # node | read-write | read-only: a Service of the cluster's
ADDRESS = f"{PREFIX}/address"  # annotation on a node's PVC: the cluster's own address, if any
PORTS = f"{PREFIX}/ports"  # annotation on a node's PVC: its named ports
SPEC_HASH = f"{PREFIX}/spec-hash"  # annotation on a StatefulSet: the declaration it runs
POOLER = f"{PREFIX}/pooler"  # label: a cluster's pooler (its value: the cluster id)
POOLER_FILES = f"{PREFIX}/pooler-files"  # annotation on the pooler's pod: its files' digests

ZONE_KEY = "topology.kubernetes.io/zone"
# The one account of every database pod (its Role: what Patroni's Kubernetes DCS
# calls); made with the namespace (deploy/kubernetes), not per cluster.
DATABASE_ACCOUNT = "hoard-database"
LEADER, FOLLOWER = "primary", "replica"  # the values of ROLE
_ID = re.compile(r"^[0-9a-f-]{1,40}$")
_ADDRESS = re.compile(r"^hoard-a[0-9a-f]{12}$")


def _checked(node_or_cluster_id: str) -> str:
    if not _ID.match(node_or_cluster_id):
        raise ValueError(f"bad id {node_or_cluster_id!r}")
    return node_or_cluster_id


def node_object(node_id: str) -> str:
    """The node's StatefulSet and its headless Service (the node's own DNS name)."""
    return f"hoard-{_checked(node_id)}"


POD_FORMAT = "hoard-{node_id}-0"  # a node's pod: its StatefulSet's first (only) ordinal


def pod(node_id: str) -> str:
    return POD_FORMAT.format(node_id=_checked(node_id))


def claim(node_id: str) -> str:
    return f"{node_object(node_id)}-data"


def tls_secret(node_id: str) -> str:
    return f"{node_object(node_id)}-tls"


def cluster_object(cluster_id: str) -> str:
    """The cluster's NetworkPolicy and PodDisruptionBudget."""
    return f"hoard-{_checked(cluster_id)}"


def pooler_object(cluster_id: str) -> str:
    """The cluster's pooler: its StatefulSet (of one pod, so exec finds it by name)."""
    return f"{cluster_object(cluster_id)}-pooler"


def pooler_pod(cluster_id: str) -> str:
    return f"{pooler_object(cluster_id)}-0"


def credentials_secret(cluster_id: str) -> str:
    return f"{cluster_object(cluster_id)}-credentials"


def address_service(host: str) -> str:
    """The Service behind a cluster's own address ``hoard-a<hex>.<namespace>.svc``."""
    name = host.split(".", 1)[0]
    if not _ADDRESS.match(name):
        raise ValueError(f"{host!r} is not an address the Kubernetes provider gave")
    return name


def host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc"


def node_labels(node_id: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, NODE: node_id}


def owner_labels(owner: Owner) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, PROJECT: owner.project_id, CLUSTER: owner.cluster_id}

