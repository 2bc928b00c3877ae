"""A stand-in for the kubelet and the StatefulSet controller (named as such: no
Kubernetes can run on these machines), in front of kmock's emulator: it runs
the pods the provider declares as local processes in sandboxes of their own
(tests/kube_sandbox.py) and reports them back through the API, so Hoard's
workflows create, fail over and stop replicated clusters whose members run
from exactly what the provider rendered.

Each pass (every 0.1 s) it:

- plays the StatefulSet controller: a StatefulSet of one replica and no pod
  gets its pod (``<name>-0``, from the template); a pod made from an older
  template is stopped (SIGTERM, then SIGKILL at its grace period's end) and
  deleted, so the next pass makes it anew; a StatefulSet scaled to 0 loses
  its pod the same way, and a pod whose StatefulSet is gone is deleted (the
  garbage collector's part);
- plays the kubelet: a new pod whose claim exists gets a sandbox (its own
  network namespace and address, its claim's directory at the volume's mount
  path) and every container's command, with its declared environment
  (``$(POD_IP)`` and ``$(VAR)`` expanded), as uid 999; its status says
  ``Running`` with its IP; its readiness probe (exec in the pod, or a TCP
  connection to the named port) runs every second and sets ``Ready``; a
  container that exits is started again (``restartCount``); a pod deleted
  through the API (a kill with no grace period) ends at once, every process
  in it SIGKILLed;
- keeps the Services' names and forwarders (tests/kube_proxy.py).

What it does not do: schedule (every pod runs here, in no zone), enforce
resources, the read-only root filesystem or the NetworkPolicy, mount Secrets
(the engines read their files from the volume), or serve container logs.
A pod with a service account token gets, instead of the token and the
in-cluster environment, a kubeconfig naming the emulator (which speaks
HTTP) in ``KUBECONFIG``, with ``PATRONI_KUBERNETES_CONTEXT`` naming its
context."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.kube_proxy import Proxy
from tests.kube_sandbox import UID, Mounts, Network, Sandbox
from tests.kube_support import NAMESPACE, MockApi

PERIOD = 0.1
PROBE_EVERY = 1.0
RESTART_AFTER = 1.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nhoard:x:999:999::/var/lib/hoard:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nhoard:x:999:\n"
# No name server: a name not in the hosts file fails at once (NXDOMAIN from the
# cluster's DNS), rather than after the host's resolver's timeouts (a Service
# with no pod left has no name; Sentinel resolves in its one thread).
RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
KUBECONFIG = "/run/hoard-kube/config"  # in the pod: its /run is its own
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Container:
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exited_at: float = 0.0


@dataclass
class RunningPod:
    name: str
    sandbox: Sandbox
    containers: list[Container]
    env: dict[str, str]
    ready: bool = False
    probed: float = 0.0


@dataclass
class Kubelet:
    """See the module's docstring. ``overlays``: host files bound over paths of
    the image in every pod."""

    api: MockApi
    root: Path  # on a private mount (kube_sandbox.private_dir)
    network: Network
    kubeconfig: str  # its text, naming the emulator at the bridge's address
    overlays: list[tuple[str, str]] = field(default_factory=list)
    running: dict[str, RunningPod] = field(default_factory=dict)
    made: dict[str, str] = field(default_factory=dict)  # pod -> its template's digest
    errors: list[str] = field(default_factory=list)
    unscheduled: set[str] = field(default_factory=set)  # pods whose host is lost
    ending: set[str] = field(default_factory=set)  # pods being deleted gracefully
    _enders: list[threading.Thread] = field(default_factory=list)
    _next_ip: int = 2
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name, text in (("hosts", ""), ("passwd", PASSWD), ("group", GROUP),
                           ("resolv.conf", RESOLV)):
            (self.root / name).write_text(text)
            (self.root / name).chmod(0o644)
        (self.root / "ns").mkdir(exist_ok=True)
        self.proxy = Proxy(self.network, self.root / "hosts", NAMESPACE, self._addresses)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def resolv(self) -> Path:
        return self.root / "resolv.conf"

    def wrap(self) -> list[str]:
        """An argv prefix running a command (Hoard's own process) with the
        cluster's names, as a pod of Hoard's would resolve them."""
        return ["unshare", "-m", "--", "sh", "-c",
                f'mount --bind {self.hosts} /etc/hosts && '
                f'mount --bind {self.resolv} /etc/resolv.conf && exec "$@"', "sh"]

    def _addresses(self) -> dict[str, tuple[dict[str, Any], str]]:
        pods = self.api.objects("pods")
        with self._lock:
            return {name: (pods[name], pod.sandbox.address)
                    for name, pod in self.running.items() if name in pods}

    def lose(self, pod: str) -> None:
        """The pod's host lost: every process in the pod SIGKILLed and the pod
        deleted (as once the node controller evicts it); the pod its StatefulSet
        makes again is not scheduled until ``bring_back``."""
        with self._lock:
            self.unscheduled.add(pod)
        self._end(pod, grace=0)
        self._delete(pod)

    def bring_back(self, pod: str) -> None:
        """A host for the lost pod again: it is scheduled and runs."""
        with self._lock:
            self.unscheduled.discard(pod)

    def enter(self, pod: str) -> list[str] | None:
        """The argv prefix that runs a command in a running pod (exec)."""
        with self._lock:
            found = self.running.get(pod)
        return None if found is None else found.sandbox.enter()

    # --- the loop -------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._pass()
            except Exception:
                text = traceback.format_exc()
                self.errors.append(text)
                print(text, file=sys.stderr)
            self._stop.wait(PERIOD)

    def _pass(self) -> None:
        sets = self.api.objects("statefulsets")
        pods = self.api.objects("pods")
        self._control(sets, pods)
        pods = self.api.objects("pods")
        for name in [n for n in self.running if n not in pods]:
            self._end(name, grace=0)  # deleted through the API: a pod lost
        claims = self.api.objects("persistentvolumeclaims")
        with self._lock:
            ending = set(self.ending)
        for name, pod in pods.items():
            if name in ending:
                continue
            if name not in self.running:
                self._run(name, pod, claims)
            else:
                self._tend(self.running[name], pod)
        self.proxy.sync(self.api.objects("services"))

    def _control(self, sets: dict[str, Any], pods: dict[str, Any]) -> None:
        for name, sts in sets.items():
            pod_name, template = f"{name}-0", sts["spec"]["template"]
            wanted = int(sts["spec"].get("replicas", 1)) >= 1
            if pod_name in pods and (not wanted or self.made.get(pod_name) != digest(template)):
                self._terminate(pod_name, pods[pod_name])
            elif wanted and pod_name not in pods:
                self.made[pod_name] = digest(template)
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": pod_name, "namespace": NAMESPACE,
                                    "labels": dict(template["metadata"]["labels"])},
                       "spec": template["spec"], "status": {"phase": "Pending"}}
                answer = httpx.post(f"{self.api.url}/api/v1/namespaces/{NAMESPACE}/pods",
                                    json=pod, timeout=10)
                assert answer.status_code < 300, answer.text
        for name in pods:
            if name.rsplit("-", 1)[0] not in sets:  # its StatefulSet is gone
                self._terminate(name, pods[name])

    def _terminate(self, name: str, pod: dict[str, Any]) -> None:
        """A graceful deletion: the pod is marked as being deleted (as the API
        server marks it), its processes get SIGTERM and its grace period, then it
        goes; on a thread of its own, so other pods are tended meanwhile."""
        with self._lock:
            if name in self.ending:
                return
            self.ending.add(name)
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        httpx.patch(f"{self.api.url}/api/v1/namespaces/{NAMESPACE}/pods/{name}", timeout=10,
                    json={"metadata": {"deletionTimestamp": _now(),
                                       "deletionGracePeriodSeconds": grace}},
                    headers={"Content-Type": "application/merge-patch+json"})

        def finish() -> None:
            try:
                self._end(name, grace)
                self._delete(name)
            finally:
                with self._lock:
                    self.ending.discard(name)

        thread = threading.Thread(target=finish, daemon=True)
        self._enders.append(thread)
        thread.start()

    def _delete(self, pod: str) -> None:
        httpx.delete(f"{self.api.url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}", timeout=10)

    def _patch(self, pod: str, status: dict[str, Any]) -> None:
        httpx.patch(f"{self.api.url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}",
                    json={"status": status}, timeout=10,
                    headers={"Content-Type": "application/merge-patch+json"})

    # --- a pod's life -----------------------------------------------------------

    def _run(self, name: str, pod: dict[str, Any], claims: dict[str, Any]) -> None:
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["name"]: m["mountPath"]
                  for c in spec["containers"] for m in c.get("volumeMounts", [])}
        claim = volumes.get("data", {}).get("persistentVolumeClaim", {}).get("claimName")
        if claim is not None and claim not in claims:
            return  # unbound: the pod stays Pending
        with self._lock:
            lost = name in self.unscheduled
        if lost:
            if (pod.get("status") or {}).get("phase") != "Pending" or not pod["status"].get(
                    "conditions"):
                self._patch(name, {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available: 1 node(s) were unreachable, "
                                "2 node(s) had volume node affinity conflict."}]})
            return
        own = self.root / "pods" / f"{name}-{time.monotonic_ns()}"
        binds: list[tuple[str, str]] = []
        if claim is not None:
            volume = self.root / "claims" / claim
            if not volume.exists():
                volume.mkdir(parents=True)
                shutil.chown(volume, UID, UID)
                volume.chmod(0o750)
            Path(mounts["data"]).mkdir(parents=True, exist_ok=True)  # the image has it
            binds.append((str(volume), mounts["data"]))
        for scratch, mode in (("tmp", 0o1777), ("run", 0o755)):
            if scratch in mounts:
                (own / scratch).mkdir(parents=True)
                shutil.chown(own / scratch, UID, UID)
                (own / scratch).chmod(mode)
                binds.append((str(own / scratch), mounts[scratch]))
        env_extra = {}
        if spec.get("automountServiceAccountToken"):
            (own / "run" / "hoard-kube").mkdir()
            (own / "run" / "hoard-kube" / "config").write_text(self.kubeconfig)
            env_extra = {"KUBECONFIG": KUBECONFIG, "PATRONI_KUBERNETES_CONTEXT": "mock"}
        binds += [(str(self.hosts), "/etc/hosts"), (str(self.resolv), "/etc/resolv.conf"),
                  (str(self.root / "passwd"), "/etc/passwd"),
                  (str(self.root / "group"), "/etc/group"), *self.overlays]
        address = self.network.pod_address(self._next_ip)
        self._next_ip += 1
        sandbox = Sandbox(name, self.root, self.network, address, Mounts(binds))
        env = {"PATH": PATH, "HOSTNAME": name, "HOME": "/var/lib/hoard", "LANG": "C.UTF-8",
               **env_extra}
        running = RunningPod(name, sandbox, [Container(c) for c in spec["containers"]], env)
        with self._lock:
            self.running[name] = running
        for container in running.containers:
            self._start(running, container, own)
        self._patch(name, self._status(running))

    def _start(self, pod: RunningPod, container: Container, own: Path | None = None) -> None:
        env = dict(pod.env)
        for item in container.spec.get("env", []):
            if "valueFrom" in item:
                assert item["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", item
                env[item["name"]] = pod.sandbox.address
            else:
                env[item["name"]] = VAR.sub(lambda m: env.get(m[1], m[0]), item["value"])
        argv = [*container.spec["command"], *container.spec.get("args", [])]
        log_dir = own or self.root / "pods"
        log = open(log_dir / f"{pod.name}-{container.spec['name']}.log", "ab")  # noqa: SIM115
        with log:
            container.proc = subprocess.Popen([*pod.sandbox.enter(), *argv], env=env,
                                              stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, cwd="/")

    def _tend(self, pod: RunningPod, current: dict[str, Any]) -> None:
        changed = False
        for container in pod.containers:
            assert container.proc is not None
            if container.proc.poll() is None:
                continue
            if not container.exited_at:
                container.exited_at, changed = time.monotonic(), True
            elif time.monotonic() - container.exited_at > RESTART_AFTER:
                container.restarts += 1
                container.exited_at = 0.0
                self._start(pod, container)
                changed = True
        if time.monotonic() - pod.probed >= PROBE_EVERY:
            pod.probed = time.monotonic()
            ready = self._probe(pod)
            changed |= ready != pod.ready
            pod.ready = ready
        if changed or (current.get("status") or {}).get("podIP") != pod.sandbox.address:
            self._patch(pod.name, self._status(pod))

    def _probe(self, pod: RunningPod) -> bool:
        server = pod.containers[0]
        if server.proc is None or server.proc.poll() is not None:
            return False
        probe = server.spec.get("readinessProbe")
        if probe is None:
            return True
        if "exec" in probe:
            done = subprocess.run([*pod.sandbox.enter(), *probe["exec"]["command"]],
                                  capture_output=True, timeout=10, check=False,
                                  env={"PATH": PATH})
            return done.returncode == 0
        port = probe["tcpSocket"]["port"]
        number = port if isinstance(port, int) else next(
            p["containerPort"] for p in server.spec.get("ports", []) if p["name"] == port)
        with contextlib.suppress(OSError), socket.create_connection(
                (pod.sandbox.address, number), timeout=1):
            return True
        return False

    def _status(self, pod: RunningPod) -> dict[str, Any]:
        statuses = []
        for c in pod.containers:
            alive = c.proc is not None and c.proc.poll() is None
            state: dict[str, Any] = {"running": {}} if alive else {"terminated": {
                "exitCode": c.proc.returncode if c.proc else 0, "reason": "Error"}}
            statuses.append({"name": c.spec["name"], "image": c.spec["image"], "imageID": "",
                             "ready": alive and pod.ready, "restartCount": c.restarts,
                             "state": state})
        return {"phase": "Running", "podIP": pod.sandbox.address,
                "podIPs": [{"ip": pod.sandbox.address}],
                "conditions": [{"type": "PodScheduled", "status": "True"},
                               {"type": "Ready", "status": "True" if pod.ready else "False"}],
                "containerStatuses": statuses}

    def _end(self, name: str, grace: float) -> None:
        with self._lock:
            pod = self.running.pop(name, None)
        if pod is None:
            return
        pod.sandbox.end(min(grace, 30.0))
        for container in pod.containers:
            if container.proc is not None:
                container.proc.wait()

    def stop(self) -> None:
        """Every pod ended (SIGTERM, then SIGKILL), the forwarders closed."""
        self._stop.set()
        self._thread.join(30)
        for thread in self._enders:
            thread.join(60)
        for name in list(self.running):
            self._end(name, grace=10)
        self.proxy.close()
