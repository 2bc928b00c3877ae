"""The Kubernetes provider: each node a StatefulSet of one pod on its own
PersistentVolumeClaim, in one namespace, every object labelled with its
project, cluster and node (``render`` says what each object is).

What the seam asks and how it is answered here:

- ``place`` makes the node's volume and its own name (a headless Service)
  before anything runs; the volume keeps what ``place`` decided (the cluster's
  own address for a standalone node, the named ports) in its annotations.
- ``hold`` makes the node's StatefulSet with a pod that only waits, on the
  volume, so the engine's bootstrap can exec into it (``runner``) before
  ``start`` gives the pod its declared processes.
- ``start`` makes sure of every object of the node, with its owner's labels,
  and answers which processes were not running (Kubernetes runs them: a lost
  pod is re-created by its StatefulSet, a lost StatefulSet by the next start).
- ``stop`` scales the StatefulSet to 0 (the volume stays); ``destroy`` deletes
  the node's objects; ``remove_endpoint`` the cluster's own (Services, policy,
  budget, credentials).
- ``runner`` reaches the node's files and tools by exec into its pod
  (``execrunner``), once the pod runs.
- ``dcs`` is the API server (Patroni's Kubernetes DCS), ``forget_dcs`` deletes
  what Patroni made; ``set_roles`` labels pods for machinery that does not;
  ``publish_secrets`` makes the Secrets the pods mount.
- What Kubernetes does not have is said so: no pid (``NotOffered`` elsewhere).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from hoard.domain.abilities import Ability
from hoard.domain.catalog import Size
from hoard.domain.dcs import Dcs, KubernetesDcs
from hoard.domain.nodes import (
    Backend,
    LogChunk,
    LogSource,
    NodeRunner,
    NodeSecrets,
    NodeSpec,
    Owner,
    RoleCheck,
    ServiceSpec,
    Volume,
)
from hoard.domain.placement import Host
from hoard.domain.pooler import POOLER_PORT
from hoard.domain.storage import StorageUsage
from hoard.providers.base import Deadlines, Endpoint, Growth, Placement, Provider, Versioned
from hoard.providers.kubernetes import names, render, usage
from hoard.providers.kubernetes.client import KINDS, Kube, KubeError
from hoard.providers.kubernetes.execrunner import CONTAINER, ExecRunner
from hoard.providers.kubernetes.pods import running_reason, waiting_reason
from hoard.providers.kubernetes.pooler import WORKDIR, KubePoolers

log = logging.getLogger(__name__)
NODE_PORT = 10000  # every pod has an address of its own: its ports are fixed, not chosen
CLUSTER_KINDS = ("Service", "PodDisruptionBudget", "NetworkPolicy", "Secret")
# Seconds a deleted cluster's pods may take to end (the longest grace period a
# member declares, Patroni's 60, and some) before what their machinery made is
# deleted anyway.
ENDING_DEADLINE = 90.0
POOLER_GLANCE = 5.0  # seconds an existing pooler's pod is waited for (an observer's look)


class NotOffered(NotImplementedError):
    """Something the seam has that this provider does not offer: the message
    says what, and what stands in for it."""


class KubernetesProvider(Provider):
    name = "kubernetes"
    holds = True  # the runner execs into the node's pod: one must run before the first start
    # An image may be pulled and a volume attached before a server starts.
    deadlines = Deadlines(start=600.0, join=1800.0, form=300.0)
    # Every ability is offered. Replicated clusters run on the engines' own
    # machinery in the members' pods (Patroni on its Kubernetes DCS, Sentinel,
    # Galera; docs/architecture.md says what ran where). The pooler runs in a pod of its own
    # (``pooler.KubePoolers``). Backups, incrementals and
    # point-in-time restores are offered: every tool runs in the pod by exec, and
    # the change logs are closed on the volume by the server itself and shipped
    # by the archiver over exec (nothing else runs there). Storage autoscaling is
    # offered: the volume's use is read by exec (``storage_usage``), a growth
    # expands the claim.
    lacks: frozenset[Ability] = frozenset()

    def __init__(self, kube: Kube, versions: dict[str, list[str]],
                 storage_class: str | None = None, registry: str = "",
                 control_plane: render.ControlPlane | None = None,
                 pooler_dir: str = WORKDIR) -> None:
        """``versions``: the images built for each engine (images/<engine>/),
        newest first; ``registry``: where they are pulled from (a prefix of the
        engines' image names); ``storage_class``: the volumes' class (the
        cluster's default if None; it must allow expansion for storage growth);
        ``control_plane``: where Hoard's workers run (they reach every port);
        ``pooler_dir``: where a pooler's files live in its pod (memory)."""
        self.kube = kube
        self.namespace = kube.namespace
        self.offered = versions
        self.storage_class = storage_class
        self.registry = registry.rstrip("/")
        self.control_plane = control_plane or render.ControlPlane()
        self.readings = usage.Readings()  # each node's last storage reading
        self.poolers = KubePoolers(kube, self.namespace, pooler_dir)

    # --- where a node is ---

    def versions(self, engine: Versioned) -> list[str]:
        return list(self.offered.get(engine.name, []))

    def new_address(self) -> str:
        return names.host(f"hoard-a{secrets.token_hex(6)}", self.namespace)

    def place(self, node_id: str, taken_ports: set[int], storage_gb: int,
              port_names: Iterable[str] = (), siblings: Iterable[Host] = (),
              address: tuple[str, int] | None = None) -> Placement:
        """The node's volume and name. Ports need no choosing (``taken_ports`` are
        other pods'), nor hosts (the scheduler spreads a cluster's pods over zones:
        the zone is known once the pod is scheduled, so none is given here)."""
        ports = {name: NODE_PORT + 1 + i for i, name in enumerate(port_names)}
        client = address[1] if address is not None else NODE_PORT
        self.kube.ensure(render.claim(node_id, storage_gb, self.namespace, self.storage_class,
                                      address=address, ports=ports), converge=())
        self.kube.ensure(render.node_service(node_id, {"client": client, **ports},
                                             self.namespace))
        host = address[0] if address is not None else names.host(names.node_object(node_id),
                                                                 self.namespace)
        return Placement(host=host, port=client, zone="", ports=ports)

    def hold(self, node_id: str, spec: NodeSpec) -> None:
        """The node's StatefulSet, running a pod that only waits, on the node's
        volume (unless the node has one already: held, or started before), so its
        runner can exec into it before ``start``."""
        if self.kube.get("StatefulSet", names.node_object(node_id)) is None:
            self.kube.ensure(render.holder_set(node_id, self._image(spec), self.namespace))

    def apply_limits(self, node_id: str, size: Size, storage_gb: int) -> dict[str, str]:
        """Nothing to do now: the pod's requests and limits come from the spec at
        ``start``; this says how each is enforced."""
        return {
            "cpu": f"{size.cpus:g} CPU, the pod's request and limit (the kubelet's cgroup)",
            "memory": f"{size.memory_mb} MiB, the pod's request and limit (the kubelet's "
                      "cgroup; over it the server is killed)",
            "storage": f"{storage_gb} GB, the node's PersistentVolumeClaim "
                       f"({self.storage_class or 'the default StorageClass'})",
        }

    def grow_storage(self, node_id: str, storage_gb: int) -> Growth:
        """Expand the node's claim in place, while it runs (the StorageClass must
        allow expansion: else the API's refusal says so). Never shrinks."""
        claim = self.kube.get("PersistentVolumeClaim", names.claim(node_id))
        if claim is None:
            raise KubeError(404, "NotFound", f"node {node_id} has no volume to grow")
        asked = claim.spec.resources.requests["storage"]
        if _gib(asked) < storage_gb:
            self.kube.patch("PersistentVolumeClaim", names.claim(node_id),
                            {"spec": {"resources": {"requests":
                                                    {"storage": render.storage(storage_gb)}}}})
            self.readings.forget(node_id)
        return Growth(True, online=True, note="the claim is expanded in place")

    def has_storage(self, node_id: str) -> bool:
        return self.kube.get("PersistentVolumeClaim", names.claim(node_id)) is not None

    def storage_usage(self, node_id: str, storage_gb: int) -> StorageUsage | None:
        """The node's volume as its own filesystem reports it, by one exec into its
        pod (``usage`` says how, and how often). None while there is nothing true
        to read: no pod running (stopped, held pod being replaced, gone, being
        re-created), a claim not bound or being resized (its filesystem is not
        yet the size asked: the old size read now would ask for a second
        growth), or a reading that failed or printed something unexpected (then
        logged). Never raises for the node's state: the observer's pass goes on."""
        pod = self.kube.get("Pod", names.pod(node_id))
        if pod is None or running_reason(pod, CONTAINER) is not None:
            return None
        claim = self.kube.get("PersistentVolumeClaim", names.claim(node_id))
        if claim is None:
            return None
        status = claim.status
        capacity = ((status.capacity if status is not None else None) or {}).get("storage")
        asked = claim.spec.resources.requests["storage"]
        # Why there is no reading is said once per kept reading, not every pass.
        if capacity is None:
            return self.readings.get(node_id, "unbound", lambda: _unread(
                node_id, logging.WARNING, "its claim reports no capacity (not bound)"))
        try:
            short = _gib(capacity) < _gib(asked)
        except ValueError as exc:
            why = f"its claim's sizes are not read: {exc}"
            return self.readings.get(node_id, f"unread {capacity} {asked}", lambda: _unread(
                node_id, logging.WARNING, why))
        if short:
            return self.readings.get(node_id, f"resizing {capacity} {asked}", lambda: _unread(
                node_id, logging.INFO, f"its claim is being resized from {capacity} to {asked}"))
        mount = _pod_mount(pod) or self._mount(node_id)
        return self.readings.get(node_id, capacity, lambda: self._read_usage(node_id, mount))

    def _read_usage(self, node_id: str, mount: str) -> StorageUsage | None:
        runner = ExecRunner(self.kube, names.pod(node_id), mount)
        try:
            return usage.parse_statfs(runner.statfs(usage.TIMEOUT))
        except Exception as exc:  # a reading is advisory: said, never the pass's end
            log.warning("node %s: no storage reading of its volume at %s: %s: %s",
                        node_id, mount, type(exc).__name__, exc)
            return None

    # --- what runs ---

    def _placed(self, node_id: str) -> tuple[str, int] | None:
        """The cluster's own address the node answers at, as ``place`` recorded it."""
        claim = self.kube.get("PersistentVolumeClaim", names.claim(node_id))
        recorded = (claim.metadata.annotations or {}).get(names.ADDRESS) if claim else None
        if not recorded:
            return None
        host, _, port = recorded.rpartition(":")
        return host, int(port)

    def _image(self, spec: NodeSpec) -> NodeSpec:
        return replace(spec, image=f"{self.registry}/{spec.image}") if self.registry else spec

    def start(self, node_id: str, spec: NodeSpec) -> list[str]:
        """Make sure of every object of the node; the processes that were not
        running (a changed declaration rolls the pod: all of them)."""
        spec = self._image(spec)
        address = self._placed(node_id)
        was = [p.name for p in spec.processes if not self.is_running(node_id, p.name)]
        rolled = False
        for manifest in render.node_objects(node_id, spec, self.namespace, self.storage_class,
                                            address, self.control_plane):
            if manifest["kind"] == "StatefulSet":
                rolled = self._ensure_set(manifest)
            elif manifest["kind"] == "PersistentVolumeClaim":
                self.kube.ensure(manifest, converge=("metadata",))  # grows only by grow_storage
            else:
                self.kube.ensure(manifest)
        return [p.name for p in spec.processes] if rolled else was

    def _ensure_set(self, manifest: dict[str, Any]) -> bool:
        """Create or converge the node's StatefulSet; True if its pod is replaced or
        made (created, scaled up from a stop, or a changed declaration)."""
        name = manifest["metadata"]["name"]
        current = self.kube.get("StatefulSet", name)
        if current is None:
            return self.kube.ensure(manifest) or True
        same = ((current.metadata.annotations or {}).get(names.SPEC_HASH)
                == manifest["metadata"]["annotations"][names.SPEC_HASH])
        if same and current.spec.replicas == 1:
            return False
        self.kube.ensure(manifest)
        return True

    def is_running(self, node_id: str, name: str = "server") -> bool:
        """Whether the node's pod runs process ``name``, or is on its way to (being
        scheduled, its image pulled, or made by its StatefulSet): a pod waiting is
        not a server that exited. False when nothing will run it (no StatefulSet,
        scaled to 0, or still the holder's) or the process terminated."""
        pod = self.kube.get("Pod", names.pod(node_id))
        if pod is None or render.holding(pod.spec):
            # No pod, or the holder (which runs none of the node's processes):
            # once ``start`` has declared them, the StatefulSet makes their pod
            # (the holder ending, its grace period running, or gone and its
            # successor not made yet; or a pod lost): they are on their way.
            held = self.kube.get("StatefulSet", names.node_object(node_id))
            return (held is not None and bool(held.spec.replicas)
                    and not render.holding(held.spec.template.spec))
        if pod.metadata.deletionTimestamp is not None:
            return False
        if pod.status is None:
            return True  # just made: not scheduled yet
        if pod.status.phase in ("Failed", "Succeeded"):
            return False
        for status in pod.status.containerStatuses or []:
            if status.name == name:
                state = status.state
                crashed = (state is not None and state.waiting is not None
                           and state.waiting.reason == "CrashLoopBackOff")
                return not crashed and (state is None or state.terminated is None)
        return True  # not reported yet: being created

    def waiting_for(self, node_id: str) -> str | None:
        """Why the node's pod is not ready, in Kubernetes' words; None once it is. A
        held node's pod (its StatefulSet declares the holder) is ready once it runs:
        a command can be exec'd into it; a holder whose StatefulSet declares the
        server's processes is the pod being replaced."""
        pod = self.kube.get("Pod", names.pod(node_id))
        if pod is None or not render.holding(pod.spec):
            return waiting_reason(pod)
        held = self.kube.get("StatefulSet", names.node_object(node_id))
        if held is not None and render.holding(held.spec.template.spec):
            return running_reason(pod, CONTAINER)
        return "the holder pod is being replaced by the server's"

    def wait_ready(self, node_id: str, timeout: float,
                   report: Callable[[str], None] | None = None,
                   reason: Callable[[Any], str | None] = waiting_reason) -> None:
        """Until the node's pod is ready (``reason`` says why not; None: it is),
        watching its changes (a 410 lists again), telling ``report`` each new reason
        it waits; TimeoutError with the last."""
        self._wait_pod({names.NODE: node_id}, f"node {node_id}", timeout, report, reason)

    def _wait_pod(self, labels: dict[str, str], what: str, timeout: float,
                  report: Callable[[str], None] | None,
                  reason: Callable[[Any], str | None]) -> None:
        deadline = time.monotonic() + timeout
        last: str | None = "no pod yet"
        while True:
            listed = self.kube.pods(labels)
            last = reason(listed.items[0] if listed.items else None)
            if last is None:
                return
            if report:
                report(last)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} was not ready in {timeout:g} s: {last}")
            try:
                for pod in self.kube.watch_pods(labels, listed.version, left):
                    now = reason(pod)
                    if now is None:
                        return
                    if now != last and report:
                        report(now)
                    last = now
                    if time.monotonic() >= deadline:
                        break
            except KubeError as exc:
                if exc.code != 410:  # 410 Gone: the version is too old; list again
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} was not ready in {timeout:g} s: {last}")

    def address_taken(self, host: str, port: int) -> bool:
        return False  # every pod has an address of its own: nothing else can hold it

    def listen_host(self, host: str) -> str:
        """Every address of the pod: clients reach it by a Service's name, which
        no process in the pod holds (the NetworkPolicy admits only its ports)."""
        return "0.0.0.0"  # noqa: S104 - the pod's own interfaces, behind its policy

    def kill(self, node_id: str) -> None:
        """Delete the node's pod with no grace period, as a lost host would lose it;
        its StatefulSet makes it again on the same volume."""
        self.kube.kill_pod(names.pod(node_id))

    def pid(self, node_id: str) -> int | None:
        return None  # a process id in a pod means nothing outside it

    def stop(self, node_id: str) -> None:
        """Scale the node's StatefulSet to 0: its pod stops (the engine's stop signal,
        then the grace period), its volume stays. Idempotent."""
        if self.kube.get("StatefulSet", names.node_object(node_id)) is not None:
            self.kube.patch("StatefulSet", names.node_object(node_id), {"spec": {"replicas": 0}})

    def destroy(self, node_id: str) -> None:
        """Delete every object of the node, its volume last. Idempotent."""
        labels = names.node_labels(node_id)
        for kind in KINDS:
            for name in self.kube.names(kind, labels):
                self.kube.delete(kind, name)
        # Made by place before any label of its owner: found by name too.
        self.kube.delete("Service", names.node_object(node_id))
        self.kube.delete("PersistentVolumeClaim", names.claim(node_id))
        self.readings.forget(node_id)

    def output_tail(self, node_id: str, name: str = "server", max_bytes: int = 4096) -> str:
        return self.kube.log_tail(names.pod(node_id), name, max_bytes)

    def node_ids(self) -> set[str]:
        found: set[str] = set()
        for kind in ("StatefulSet", "Service", "PersistentVolumeClaim"):
            for obj in self.kube.labelled(kind, {names.MANAGED_BY: names.MANAGER}):
                node = (obj.metadata.labels or {}).get(names.NODE)
                if node:
                    found.add(node)
        return found

    def read_log(self, node_id: str, source: LogSource, offset: int | None,
                 max_bytes: int) -> LogChunk:
        """A process's output is its container's log: the API gives its tail, not
        offsets into it, so every read is the tail (a follower sees it again). A
        file on the node's volume is read by exec into its pod, at once (a log
        read does not wait for a pod: with none running, the API server's 404
        says so)."""
        if source.path is not None:
            runner = ExecRunner(self.kube, names.pod(node_id), self._mount(node_id))
            data, start, end = runner.read_range(source.path, offset, max_bytes)
            return LogChunk(data, start, end)
        data = self.kube.log_tail(names.pod(node_id), source.process, max_bytes).encode()
        return LogChunk(data, 0, len(data))

    def runner(self, node_id: str) -> NodeRunner:
        """Exec into the node's pod, on its volume where the pod mounts it. The pod
        is waited for (within the start deadline) at the runner's first command,
        not here: a runner is also asked for its paths alone (a declaration's
        argv), while the node is stopped."""
        return ExecRunner(self.kube, names.pod(node_id), self._mount(node_id),
                          ready=lambda: self._reach(node_id))

    def _reach(self, node_id: str) -> None:
        """Until a pod runs on the node's volume. A stopped node (scaled to 0) has
        none, and its files are still written before it starts again (a member
        formed from a standalone server, a cluster started with changed settings,
        a node detached): it is held again, its pod the holder's (its image,
        size and volume; a wait, serving nothing) until the next ``start``
        declares its processes or ``stop`` scales it to 0 once more."""
        found = self.kube.get("StatefulSet", names.node_object(node_id))
        if found is not None and found.spec.replicas == 0:
            container = found.spec.template.spec.containers[0].to_dict()
            container.pop("readinessProbe", None)
            container.pop("args", None)
            self.kube.patch("StatefulSet", names.node_object(node_id), {
                "metadata": {"annotations": {names.SPEC_HASH: "held"}},
                "spec": {"replicas": 1, "template": {"spec": {
                    "containers": [container | {"name": CONTAINER,
                                                "command": list(render.HOLD)}]}}}})
            # The stopped server's pod may not have begun to end yet: the holder's.
            self.wait_ready(node_id, self.deadlines.start, reason=lambda pod: (
                running_reason(pod, CONTAINER) or (
                    None if render.holding(pod.spec) else "the stopped server's pod is ending")))
            return
        self.wait_running(node_id, self.deadlines.start)

    def wait_running(self, node_id: str, timeout: float,
                     report: Callable[[str], None] | None = None) -> None:
        """Until the node's pod runs its "server" container (the holder's or the
        server's: ready or not, a command can be exec'd into it)."""
        self.wait_ready(node_id, timeout, report,
                        reason=lambda pod: running_reason(pod, CONTAINER))

    def _mount(self, node_id: str) -> str:
        """Where the node's pod mounts its volume: as its StatefulSet says, else
        where every engine declares it."""
        found = self.kube.get("StatefulSet", names.node_object(node_id))
        containers = found.spec.template.spec.containers if found is not None else []
        for container in containers[:1]:
            for mount in container.volumeMounts or []:
                if mount.name == "data":
                    return str(mount.mountPath)
        return Volume(0).path

    # --- what replicated clusters need ---

    def dcs(self) -> Dcs:
        """The API server itself (Patroni's Kubernetes DCS): a member finds its
        cluster's pods by Hoard's labels, keeps the leader lock in an Endpoints
        object of the cluster's, and labels its pod's role with the values the
        endpoint Services select. Nothing to run."""
        return KubernetesDcs(
            namespace=self.namespace,
            labels=((names.MANAGED_BY, names.MANAGER),),
            scope_label=names.CLUSTER, role_label=names.ROLE,
            leader_label_value=names.LEADER, follower_label_value=names.FOLLOWER,
            member_format=names.POD_FORMAT)

    def forget_dcs(self, cluster_id: str, prefix: str) -> None:
        """Delete what the cluster's Patroni made: its Endpoints (leader, config,
        sync, failover) and the ``-config`` Service keeping one, found by the
        labels it gives them (Hoard's and the cluster's). Idempotent."""
        labels = {names.MANAGED_BY: names.MANAGER, names.CLUSTER: cluster_id}
        # A member still ending (its grace period: Patroni stops PostgreSQL, hands
        # its lock over) may write them again: its pods are waited for first.
        deadline = time.monotonic() + ENDING_DEADLINE
        while self.kube.names("Pod", labels) and time.monotonic() < deadline:
            time.sleep(0.5)
        for name in self.kube.names("Endpoints", labels):
            self.kube.delete("Endpoints", name)
        for obj in self.kube.labelled("Service", labels):
            if not {names.NODE, names.ENDPOINT} & set(obj.metadata.labels or {}):
                self.kube.delete("Service", obj.metadata.name)  # Patroni's, not Hoard's

    def set_roles(self, cluster_id: str, roles: Mapping[str, str]) -> None:
        """Label each member's pod with its role, where the label differs (a
        patch per change, none when the roles stand): the read-write Service
        follows the primary. For machinery that does not label pods itself
        (Sentinel, Galera); a pod not there (stopped, being made) is skipped:
        the next observation labels it."""
        for pod in self.kube.labelled("Pod", {names.CLUSTER: cluster_id}):
            node = (pod.metadata.labels or {}).get(names.NODE)
            role = roles.get(node or "")
            if role not in (names.LEADER, names.FOLLOWER):
                continue
            if (pod.metadata.labels or {}).get(names.ROLE) != role:
                self.kube.patch("Pod", pod.metadata.name,
                                {"metadata": {"labels": {names.ROLE: role}}})

    def publish_secrets(self, node_id: str, owner: Owner, secrets: NodeSecrets) -> None:
        """The node's certificate and its cluster's service account as Secrets
        (replaced when they changed: a renewed certificate), which the node's
        pod mounts; labelled, and deleted with the node and the cluster."""
        self.kube.ensure(render.tls_secret(node_id, owner, secrets.cert_pem, secrets.key_pem,
                                           secrets.ca_pem, self.namespace))
        self.kube.ensure(render.credentials_secret(owner, secrets.user, secrets.password,
                                                   self.namespace))

    def _owner(self, cluster_id: str) -> Owner:
        """The cluster's owner, from the labels one of its nodes' pods carries."""
        labels = self._cluster_template(cluster_id).metadata.labels
        return Owner(labels[names.PROJECT], cluster_id, standalone=False)

    def ensure_endpoint(self, cluster_id: str, backends: list[Backend], check: RoleCheck,
                        ca_file: str, endpoint: Endpoint) -> None:
        """The read-write and read-only Services, selecting the cluster's pods by the
        role label their HA machinery keeps (``check`` is for a proxy that asks the
        nodes itself; Kubernetes routes by label)."""
        owner = self._owner(cluster_id)
        for manifest in render.endpoint_services(owner, (endpoint.rw_host, endpoint.rw_port),
                                                 (endpoint.ro_host, endpoint.ro_port),
                                                 self.namespace):
            self.kube.ensure(manifest)

    def endpoint_running(self, cluster_id: str) -> bool:
        base = {names.CLUSTER: cluster_id}
        return all(self.kube.names("Service", base | {names.ENDPOINT: role})
                   for role in ("read-write", "read-only"))

    def ensure_pooler(self, cluster_id: str, address: str, spec: ServiceSpec) -> bool:
        """The pooler's pod in the cluster's own image, its files written into it
        by exec (``pooler.KubePoolers``); waits for the pod to run (within the
        start deadline: an image may be pulled)."""
        template = self._cluster_template(cluster_id)
        owner = Owner(template.metadata.labels[names.PROJECT], cluster_id, standalone=False)
        image = template.spec.containers[0].image  # the cluster's own (it carries PgBouncer)

        def running(made: bool) -> bool:
            try:
                self._wait_pod({names.POOLER: cluster_id}, f"the pooler of cluster {cluster_id}",
                               self.deadlines.start if made else POOLER_GLANCE, None,
                               lambda found: running_reason(found, CONTAINER))
            except TimeoutError as exc:
                if made:
                    raise
                log.warning("%s; its files are written once it runs", exc)
                return False
            return True

        return self.poolers.ensure(owner, address, POOLER_PORT, image, spec, running)

    def _cluster_template(self, cluster_id: str) -> Any:
        """The pod template of one of the cluster's nodes (its owner's labels and
        its image)."""
        for found in self.kube.labelled("StatefulSet", {names.CLUSTER: cluster_id}):
            if names.NODE in (found.metadata.labels or {}):
                return found.spec.template
        raise KubeError(404, "NotFound", f"cluster {cluster_id}: none of its nodes has been "
                                         "started, so its image and project are not known here")

    def remove_pooler(self, cluster_id: str) -> None:
        self.poolers.remove(cluster_id)

    def remove_endpoint(self, cluster_id: str) -> None:
        """Delete the cluster's own objects (its Services, policy, budget and
        credentials); its nodes' are ``destroy``'s. Idempotent."""
        for kind in CLUSTER_KINDS:
            for obj in self.kube.labelled(kind, {names.CLUSTER: cluster_id,
                                                 names.MANAGED_BY: names.MANAGER}):
                labels = obj.metadata.labels or {}
                if kind == "Service" and names.ENDPOINT not in labels:
                    continue  # a node's own name: its node's, left to destroy
                if kind == "Secret" and names.NODE in labels:
                    continue  # a node's certificate: likewise
                self.kube.delete(kind, obj.metadata.name)


def _unread(node_id: str, level: int, why: str) -> None:
    log.log(level, "node %s: no storage reading: %s", node_id, why)


def _pod_mount(pod: Any) -> str | None:
    """Where the pod's first container mounts the node's volume ("data")."""
    for container in (pod.spec.containers if pod.spec is not None else [])[:1]:
        for mount in container.volumeMounts or []:
            if mount.name == "data":
                return str(mount.mountPath)
    return None


def _gib(quantity: str) -> float:
    """A storage quantity in GiB (what Hoard asks for is always whole ``Gi``)."""
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10, "G": 1e9 / 2**30,
             "M": 1e6 / 2**30, "T": 1e12 / 2**30}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    return float(quantity) / 2**30


def versions_from(text: str) -> dict[str, list[str]]:
    """``postgresql=15,mariadb=10.11,redis=7.0`` (a version per entry; an engine
    named twice offers both, newest first as written)."""
    offered: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        engine, sep, version = item.partition("=")
        if not sep or not engine.strip() or not version.strip():
            raise ValueError(f"HOARD_KUBERNETES_VERSIONS: {item!r} is not ENGINE=VERSION")
        offered.setdefault(engine.strip(), []).append(version.strip())
    return offered
