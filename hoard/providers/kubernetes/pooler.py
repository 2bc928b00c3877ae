"""A cluster's connection pooler on Kubernetes: a pod of its own, kept by a
StatefulSet of one (a stable name, so Hoard execs into it as into a node's
pod), answering at the cluster's pooler address through a Service, in the
cluster's own image (which carries the pooler: images/postgresql).

The engine declares the pooler (``ServiceSpec``): files read relative to its
working directory, and its process. The files hold secrets (the users' SCRAM
secrets, the TLS key), so they live only in the pod's memory (an emptyDir at
``workdir``) and reach it as a node's files do: through exec, the content on
stdin. The container waits until they are there (``READY``, written last),
then runs the process in that directory under a small wrapper that records its
pid and passes the pod's stop signal on. Which files the pod holds is noted on
the pod itself (``names.POOLER_FILES``: their digests), so ``ensure`` writes
only what changed (a kept file, the key and certificate, only when missing)
and then sends the running process the spec's reload signal: clients stay
connected, as on the local provider. A new pod (a lost one re-made by its
StatefulSet) carries no note: every file is written again, and that is a
start. The pod runs the cluster's image: when that changes (an upgrade), the
StatefulSet is patched to it, and its new pod is filled the same way.

Why not a Secret mounted as a volume: the kubelet refreshes a mounted Secret
only eventually (a minute or more), so a reload could not know when the new
users had arrived; a file written by exec is there when the exec returns.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import PurePosixPath

from hoard.domain.nodes import Owner, ServiceSpec
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import Kube
from hoard.providers.kubernetes.execrunner import CONTAINER, ExecRunner
from hoard.providers.kubernetes.render import UID, Manifest, _meta, address_service

WORKDIR = "/run/hoard/pooler"  # in the pod's memory-backed emptyDir mounted at /run
READY = ".ready"  # written after every file: the wrapper starts the process then
PID = ".pid"  # the process's pid, as the wrapper recorded it
# $1 the working directory, then the declared argv. Waits for the files, runs the
# process in the background (so the shell, the container's first process, can
# pass the stop signal on: a shell ignores SIGTERM unless it traps it) and exits
# with its status.
WRAPPER = ('cd "$1" || exit 1; shift; '
           f'until [ -e {READY} ]; do sleep 0.2; done; '
           f'"$@" & child=$!; echo "$child" > {PID}; '
           "trap 'kill -TERM \"$child\" 2>/dev/null' TERM INT; "
           'while :; do wait "$child"; status=$?; '
           'kill -0 "$child" 2>/dev/null || break; done; exit "$status"')
RESOURCES = {"cpu": "250m", "memory": "128Mi"}  # PgBouncer is single-threaded and small


def labels(owner: Owner) -> dict[str, str]:
    return names.owner_labels(owner) | {names.POOLER: owner.cluster_id}


def pooler_set(owner: Owner, spec: ServiceSpec, image: str, port: int, namespace: str,
               workdir: str = WORKDIR) -> Manifest:
    """The pooler's pod: the wrapper over the declared process, the port named
    "client" (the cluster's NetworkPolicy opens that name to everyone), read-only
    root, no API token."""
    container: Manifest = {
        "name": CONTAINER,
        "image": image,
        "command": ["/bin/sh", "-c", WRAPPER, "pooler", workdir, *spec.process.argv],
        "ports": [{"name": "client", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "client"}, "periodSeconds": 2,
                           "timeoutSeconds": 2, "failureThreshold": 3},
        "resources": {"requests": dict(RESOURCES), "limits": dict(RESOURCES)},
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "run", "mountPath": "/run"},
                         {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (the pod's own)
    }
    pod: Manifest = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": int(spec.process.stop_timeout) + 5,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _meta(names.pooler_object(owner.cluster_id), labels(owner), namespace),
        "spec": {
            "replicas": 1,
            "serviceName": names.pooler_object(owner.cluster_id),
            "selector": {"matchLabels": {names.POOLER: owner.cluster_id}},
            "template": {"metadata": {"labels": labels(owner)}, "spec": pod},
        },
    }


def pooler_service(owner: Owner, address: str, port: int, namespace: str) -> Manifest:
    """The cluster's pooler address, selecting the pooler's pod."""
    return address_service(address, port, {names.POOLER: owner.cluster_id}, labels(owner),
                           namespace)


def digests(spec: ServiceSpec) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.content).hexdigest()[:16] for f in spec.files}


class KubePoolers:
    """``ensure`` and ``remove`` for the provider (the module's docstring)."""

    def __init__(self, kube: Kube, namespace: str, workdir: str = WORKDIR) -> None:
        self.kube, self.namespace, self.workdir = kube, namespace, workdir

    def ensure(self, owner: Owner, address: str, port: int, image: str, spec: ServiceSpec,
               wait_running: Callable[[bool], bool]) -> bool:
        """Make the pooler's objects if missing, then bring its pod's files to
        ``spec``. The pod must run to take them: ``wait_running(made)`` waits
        for it (long when just made: an image may be pulled; briefly when not,
        so an observer's pass is not held by a pod that cannot start) and says
        whether it runs; if not, nothing more is done now (the next look does
        it). True if the pooler had to be started (made, or a new pod filled)."""
        cluster_id = owner.cluster_id
        made = False
        found_set = self.kube.get("StatefulSet", names.pooler_object(cluster_id))
        if found_set is None:
            made = self.kube.ensure(pooler_set(owner, spec, image, port, self.namespace,
                                               self.workdir))
        elif found_set.spec.template.spec.containers[0].image != image:
            # The cluster's image changed (an upgrade): its StatefulSet makes the
            # pod again from it, and a later look fills the new pod (a start).
            rendered = pooler_set(owner, spec, image, port, self.namespace, self.workdir)
            self.kube.patch("StatefulSet", names.pooler_object(cluster_id),
                            {"spec": {"template": rendered["spec"]["template"]}})
        self.kube.ensure(pooler_service(owner, address, port, self.namespace), converge=())
        if not wait_running(made):
            return made
        pod = names.pooler_pod(cluster_id)
        found = self.kube.get("Pod", pod)
        annotations = (found.metadata.annotations or {}) if found else {}
        held = json.loads(annotations.get(names.POOLER_FILES, "{}"))
        wanted = digests(spec)
        stale = [f for f in spec.files
                 if held.get(f.name) != wanted[f.name] and not (f.keep and f.name in held)]
        if not stale:
            return made
        runner = ExecRunner(self.kube, pod, self.workdir)
        for file in stale:
            runner.write_file(PurePosixPath(file.name), file.content, file.mode)
        new_pod = not held
        if new_pod:
            runner.write_file(PurePosixPath(READY), b"", 0o600)  # the wrapper starts it now
        else:
            sig = signal.Signals(spec.reload_signal).name.removeprefix("SIG")
            runner.run(["sh", "-c", f'kill -{sig} "$(cat {PID})"'], timeout=10)
        note = {n: d for n, d in held.items() if n in wanted} | {
            f.name: wanted[f.name] for f in stale}
        self.kube.patch("Pod", pod, {"metadata": {"annotations": {
            names.POOLER_FILES: json.dumps(note, sort_keys=True)}}})
        return made or new_pod

    def remove(self, cluster_id: str) -> None:
        """Delete the pooler's StatefulSet (its pod with it) and Service. Idempotent."""
        for kind in ("StatefulSet", "Service"):
            for name in self.kube.names(kind, {names.POOLER: cluster_id}):
                self.kube.delete(kind, name)
