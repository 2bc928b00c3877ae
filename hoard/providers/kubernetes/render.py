"""What a node and its cluster become on Kubernetes, as plain manifests.

Pure functions from the engine's ``NodeSpec`` (and the node's owner) to the
objects' dicts: nothing here talks to a cluster, so every object can be
checked against the official schemas in tests. One StatefulSet per node
(``replicas`` 1, or 0 while stopped) rather than one per cluster: Hoard names,
stops, replaces and removes any node, not only the highest ordinal, and a
node may leave its cluster (promote-out) with its volume.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from hoard.domain.nodes import NodeSpec, Owner, ProcessSpec
from hoard.providers.kubernetes import names

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ControlPlane:
    """Where Hoard's workers run (deploy/kubernetes): the pods a cluster's
    NetworkPolicy lets in on every port besides its own members."""

    namespace: str = "hoard-system"
    labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/part-of", "hoard"),
                                           ("app.kubernetes.io/component", "worker"))

UID = 999  # the engines' Debian packages' system accounts (postgres, mysql, redis) use 999
SIDECAR = {"cpu": "100m", "memory": "128Mi"}  # a sidecar (Sentinel) beside the server
# Engines whose server writes nothing outside its volume but scratch files (sockets,
# temporary files, which get an emptyDir each): their root filesystem is read-only.
READ_ONLY_ROOT = {"postgresql": True, "mariadb": True, "redis": True}
SCRATCH = {"tmp": "/tmp", "run": "/run"}  # noqa: S108 (a pod's own scratch)
# What a node's pod runs before its first start: nothing but a wait, ended by the
# stop signal (a shell as a container's first process ignores SIGTERM unless it
# traps it). The image's own shell, so no other image is pulled.
HOLD = ("sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done")
# The node's certificate and its cluster's service account, as the provider's
# Secrets (``publish_secrets``), read-only where the machinery reads them.
SECRET_MOUNTS = {"tls": "/etc/hoard/tls", "credentials": "/etc/hoard/credentials"}
POD_IP_ENV: Manifest = {"name": "POD_IP",
                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
# What Patroni's Kubernetes DCS calls with the pod's account: its leader lock and
# configuration in Endpoints (``use_endpoints``), the ``-config`` Service it makes
# so that Endpoints object is kept, and its own pod's labels (the role) and
# annotations (its status); it lists and watches its cluster's pods.
DATABASE_RIGHTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "endpoints"): ("get", "list", "watch", "create", "patch", "update", "delete"),
    ("", "pods"): ("get", "list", "watch", "patch", "update"),
    ("", "services"): ("create",),
}


def _meta(name: str, labels: dict[str, str], namespace: str,
          annotations: dict[str, str] | None = None) -> Manifest:
    meta: Manifest = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def node_labels(node_id: str, owner: Owner | None) -> dict[str, str]:
    """A node's objects: its own label, and its owner's once known (from ``start``)."""
    labels = names.node_labels(node_id)
    if owner is not None:
        labels |= names.owner_labels(owner)
    return labels


def cpu(cpus: float) -> str:
    return f"{round(cpus * 1000)}m"


def memory(mb: int) -> str:
    return f"{mb}Mi"


def storage(gb: int) -> str:
    return f"{gb}Gi"


def claim(node_id: str, size_gb: int, namespace: str, storage_class: str | None,
          owner: Owner | None = None, address: tuple[str, int] | None = None,
          ports: dict[str, int] | None = None) -> Manifest:
    """The node's volume, made when it is placed (before it runs), grown in place
    (``allowVolumeExpansion`` on its StorageClass), kept while the node is stopped.
    Its annotations keep what ``place`` decided, so ``start`` renders the same."""
    annotations = {names.PORTS: json.dumps(ports or {}, sort_keys=True)}
    if address is not None:
        annotations[names.ADDRESS] = f"{address[0]}:{address[1]}"
    spec: Manifest = {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": storage(size_gb)}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(names.claim(node_id), node_labels(node_id, owner), namespace,
                              annotations),
            "spec": spec}


def _service_ports(ports: dict[str, int]) -> list[Manifest]:
    return [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
            for name, port in sorted(ports.items())]


def node_service(node_id: str, ports: dict[str, int], namespace: str,
                 owner: Owner | None = None) -> Manifest:
    """The node's own name (``hoard-<id>.<namespace>.svc``): headless, published
    before the server is ready, since its peers and Hoard reach a starting node."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(names.node_object(node_id), node_labels(node_id, owner), namespace),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {names.NODE: node_id}, "ports": _service_ports(ports)}}


def address_service(host: str, port: int, selector: dict[str, str], labels: dict[str, str],
                    namespace: str) -> Manifest:
    """A cluster's own address: a ClusterIP Service on the engine's standard port,
    sent to the selected pods' client port."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(names.address_service(host), labels, namespace),
            "spec": {"type": "ClusterIP", "selector": dict(selector),
                     "ports": [{"name": "client", "port": port, "targetPort": "client",
                                "protocol": "TCP"}]}}


def standalone_service(node_id: str, host: str, port: int, owner: Owner | None,
                       namespace: str) -> Manifest:
    """A standalone cluster's one address, selecting its one node."""
    labels = node_labels(node_id, owner) | {names.ENDPOINT: "node"}
    return address_service(host, port, {names.NODE: node_id}, labels, namespace)


def endpoint_services(owner: Owner, rw: tuple[str, int], ro: tuple[str, int],
                      namespace: str) -> list[Manifest]:
    """A replicated cluster's read-write Service (the pod labelled primary) and
    read-only Service (the pods labelled replica)."""
    base = names.owner_labels(owner)
    cluster = {names.CLUSTER: owner.cluster_id}
    return [address_service(rw[0], rw[1], cluster | {names.ROLE: names.LEADER},
                            base | {names.ENDPOINT: "read-write"}, namespace),
            address_service(ro[0], ro[1], cluster | {names.ROLE: names.FOLLOWER},
                            base | {names.ENDPOINT: "read-only"}, namespace)]


def _probe(spec: NodeSpec) -> Manifest:
    check: Manifest
    if spec.readiness.argv:
        check = {"exec": {"command": list(spec.readiness.argv)}}
    else:
        check = {"tcpSocket": {"port": spec.readiness.port_name}}
    return {**check, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}


def _container(spec: NodeSpec, process: ProcessSpec, server: bool) -> Manifest:
    if server:
        amount = {"cpu": cpu(spec.resources.cpus), "memory": memory(spec.resources.memory_mb)}
    else:
        amount = dict(SIDECAR)
    container: Manifest = {
        "name": process.name,
        "image": spec.image,
        "command": list(process.argv),
        # The pod's own address first: a declared value may refer to it as
        # $(POD_IP) (Patroni's Kubernetes DCS writes it into its Endpoints).
        "env": [POD_IP_ENV, *({"name": k, "value": v} for k, v in sorted(process.env.items()))],
        # Requests equal limits: the node gets what its size promises, no more, and
        # its pod is in the Guaranteed QoS class (evicted last).
        "resources": {"requests": amount, "limits": dict(amount)},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": READ_ONLY_ROOT.get(spec.engine, False),
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "data", "mountPath": spec.volume.path},
                         *({"name": n, "mountPath": p} for n, p in SCRATCH.items()),
                         *({"name": n, "mountPath": p, "readOnly": True}
                           for n, p in SECRET_MOUNTS.items())],
    }
    if server:
        # Every named port is the pod's (containers share its network): declared
        # once, on the server, so Services find them by name.
        container["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"}
                              for n, p in sorted(spec.ports.items())]
        if tuple(process.argv) != HOLD:  # a holder serves nothing: never ready
            container["readinessProbe"] = _probe(spec)
    return container


def _secret_volume(name: str, secret: str) -> Manifest:
    """A Secret of the provider's, mounted read-only (0400, the pod's group may
    read it): optional, so a pod starts before its Secrets are published and
    sees them once they are (the kubelet refreshes a Secret volume)."""
    return {"name": name, "secret": {"secretName": secret, "optional": True,
                                     "defaultMode": 0o440}}


def spec_hash(node_id: str, spec: NodeSpec) -> str:
    """A digest of the pod as declared (owner included: a node promoted out of its
    cluster is relabelled): a start that finds the same one changes nothing."""
    text = json.dumps(_template(spec, node_id, spec.owner), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _template(spec: NodeSpec, node_id: str, owner: Owner | None) -> Manifest:
    labels = node_labels(node_id, owner) | {"app.kubernetes.io/name": spec.engine}
    if owner is not None and owner.standalone:
        labels[names.ROLE] = "primary"  # else the HA machinery labels its pods' roles
    spread: Manifest = {"labelSelector": {"matchLabels": {names.CLUSTER: owner.cluster_id}},
                        "topologyKey": names.ZONE_KEY} if owner is not None else {}
    pod: Manifest = {
        # One account for every database pod; its token only where the machinery
        # keeps its state in the API (Patroni): a pod that does not call the API
        # server holds no credential for it.
        "serviceAccountName": names.DATABASE_ACCOUNT,
        "automountServiceAccountToken": spec.uses_dcs,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": int(max(p.stop_timeout for p in spec.processes)),
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "fsGroup": UID, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(spec, p, i == 0) for i, p in enumerate(spec.processes)],
        "volumes": [{"name": "data",
                     "persistentVolumeClaim": {"claimName": names.claim(node_id)}},
                    *({"name": n, "emptyDir": {}} for n in SCRATCH),
                    _secret_volume("tls", names.tls_secret(node_id)),
                    _secret_volume("credentials", names.credentials_secret(owner.cluster_id)
                                   if owner is not None else "")],
    }
    if spread:
        # A preference, as the local provider's placement: with fewer zones than
        # nodes, nodes share a zone rather than not run.
        pod["affinity"] = {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": spread}]}}
    return {"metadata": {"labels": labels}, "spec": pod}


def stateful_set(node_id: str, spec: NodeSpec, namespace: str, replicas: int = 1) -> Manifest:
    """The node's pod, kept by a StatefulSet of one: re-created by Kubernetes when
    lost, on the node's own volume and name."""
    if spec.owner is None:
        raise ValueError(f"node {node_id}: the Kubernetes provider needs the node's owner "
                         "(project and cluster) to label what it makes")
    if not spec.processes or spec.processes[0].name != "server":
        raise ValueError(f"node {node_id}: the first process must be the server")
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _meta(names.node_object(node_id), node_labels(node_id, spec.owner),
                          namespace, {names.SPEC_HASH: spec_hash(node_id, spec)}),
        "spec": {
            "replicas": replicas,
            "serviceName": names.node_object(node_id),
            "selector": {"matchLabels": {names.NODE: node_id}},
            "podManagementPolicy": "Parallel",
            "template": _template(spec, node_id, spec.owner),
        },
    }


def holder_set(node_id: str, spec: NodeSpec, namespace: str) -> Manifest:
    """The node's StatefulSet before its first start: the node's image, size and
    volume, one container named "server" that only waits. Engines' bootstrap and
    configuration exec into it (a pod must run on the volume for that); ``start``
    then makes it the declared pod, on the node already scheduled."""
    holder = ProcessSpec(list(HOLD), name="server", stop_timeout=5.0)
    return stateful_set(node_id, replace(spec, processes=(holder,)), namespace)


def holding(pod_spec: Any) -> bool:
    """Whether a pod (its spec, as lightkube reads it) is a holder's."""
    containers = getattr(pod_spec, "containers", None) or []
    return bool(containers) and tuple(containers[0].command or ()) == HOLD


def network_policy(owner: Owner, client_port: str, namespace: str,
                   control_plane: ControlPlane) -> Manifest:
    """Only the database port is open to everyone; the cluster's own pods reach
    each other on every port (replication, the HA machinery), and Hoard's
    workers, in their own namespace, reach them on every port (the HA agents'
    role checks)."""
    members = {"podSelector": {"matchLabels": {names.CLUSTER: owner.cluster_id}}}
    workers = {"namespaceSelector": {"matchLabels": {
                   "kubernetes.io/metadata.name": control_plane.namespace}},
               "podSelector": {"matchLabels": dict(control_plane.labels)}}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(names.cluster_object(owner.cluster_id), names.owner_labels(owner),
                          namespace),
        "spec": {
            "podSelector": {"matchLabels": {names.CLUSTER: owner.cluster_id}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": client_port}]},
                {"from": [members, workers]},
            ],
        },
    }


def disruption_budget(owner: Owner, namespace: str) -> Manifest:
    """A voluntary disruption (a node drained) takes one pod of a cluster at a time."""
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(names.cluster_object(owner.cluster_id), names.owner_labels(owner),
                          namespace),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": {names.CLUSTER: owner.cluster_id}}},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_secret(node_id: str, owner: Owner, cert_pem: bytes, key_pem: bytes, ca_pem: bytes,
               namespace: str) -> Manifest:
    """A node's certificate and key from Hoard's CA, and the CA's certificate."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": _meta(names.tls_secret(node_id), node_labels(node_id, owner), namespace),
            "data": {"tls.crt": _b64(cert_pem), "tls.key": _b64(key_pem),
                     "ca.crt": _b64(ca_pem)}}


def credentials_secret(owner: Owner, user: str, password: str, namespace: str) -> Manifest:
    """The cluster's accounts, for the pods' own machinery (never shown to tenants
    from here: Hoard's API is the one place that returns them)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": _meta(names.credentials_secret(owner.cluster_id),
                              names.owner_labels(owner), namespace),
            "data": {"username": _b64(user.encode()), "password": _b64(password.encode())}}


def database_account(namespace: str) -> list[Manifest]:
    """The database pods' ServiceAccount, its Role (``DATABASE_RIGHTS``) and the
    binding, in the databases' namespace: one for every pod, made with the
    namespace (deploy/kubernetes) rather than by the provider. Per cluster
    would not confine Patroni: a Role names resources by kind, not by label,
    so each cluster's account could still reach every cluster's Endpoints; and
    the workers would need to make Roles, a right that is an escalation of its
    own (RBAC lets only an account holding a Role's rights grant them)."""
    labels = {"app.kubernetes.io/part-of": "hoard",
              "app.kubernetes.io/component": "database"}
    name = names.DATABASE_ACCOUNT
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": _meta(name, labels, namespace),
         # Mounted by the pods that ask for it (``automountServiceAccountToken``).
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(name, labels, namespace),
         "rules": [{"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
                   for (group, resource), verbs in DATABASE_RIGHTS.items()]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(name, labels, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]


def node_objects(node_id: str, spec: NodeSpec, namespace: str, storage_class: str | None,
                 address: tuple[str, int] | None, control_plane: ControlPlane,
                 replicas: int = 1) -> list[Manifest]:
    """Everything ``start`` makes sure of for a node: its volume and name (with its
    owner's labels now), its StatefulSet, its cluster's policy and budget, and a
    standalone cluster's address."""
    owner = spec.owner
    if owner is None:
        raise ValueError(f"node {node_id}: no owner given")
    ports = dict(spec.ports)
    extra = {k: v for k, v in ports.items() if k != "client"}
    objects = [claim(node_id, spec.volume.size_gb, namespace, storage_class, owner, address,
                     extra),
               node_service(node_id, ports, namespace, owner),
               stateful_set(node_id, spec, namespace, replicas),
               network_policy(owner, "client", namespace, control_plane),
               disruption_budget(owner, namespace)]
    if address is not None:
        objects.append(standalone_service(node_id, address[0], address[1], owner, namespace))
    return objects
