"""What the Kubernetes provider's tests share: node declarations from the real
engines, the schema check, and a mock Kubernetes API server (kmock's
emulator with resource versions, compare-and-set and label selectors added,
tests/kube_emulator.py; over HTTP on loopback) that the provider's own client
talks to.

The emulator keeps objects as JSON and merges patches into them; it runs
no controllers (no StatefulSet makes a pod: a test plays that part by writing
the pod), knows only the resources declared to it, and answers errors with
``application/json; charset=utf-8`` (lightkube expects exactly
``application/json``: the provider's client reads both). A test asking what
is left reads the emulator's own store (``MockApi.objects``), every object of
a kind, not a labelled list."""

from __future__ import annotations

import asyncio
import copy
import functools
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp.test_utils
import httpx
import kmock
import kubernetes_validate
import pytest
import yaml

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import NodeSpec, Owner, ProcessSpec, Resources, Volume
from hoard.engines.base import Credentials, NodeContext
from hoard.engines.registry import ENGINES
from hoard.providers.kubernetes import names, render
from hoard.providers.kubernetes.client import Kube, config
from hoard.providers.kubernetes.provider import NODE_PORT, KubernetesProvider
from hoard.settings import Settings
from hoard.workflows.services import Services, build
from tests.kube_emulator import VersionedEmulator

# Three minor versions of Kubernetes, oldest to newest still maintained upstream
# or close to it: every object is checked against each one's official schema.
K8S_VERSIONS = ("1.29", "1.33", "1.37")
NAMESPACE = "hoard"
PROJECT = "0190a3b4-0000-7000-8000-00000000aaaa"


class Paths:
    """A node's files as its engine names them, on the volume at its mount path:
    the one thing of a ``NodeRunner`` a declaration uses."""

    def __init__(self, root: str) -> None:
        self.root = root

    def abspath(self, path: PurePosixPath) -> str:
        return f"{self.root}/{path}"


def node_spec(engine_name: str, node_id: str, cluster_id: str, members: int = 1,
              storage_gb: int = 10) -> NodeSpec:
    """The node as ``members.node_spec`` declares it: the engine's own process,
    image and readiness; a member of a replicated cluster gets its engine's HA
    ports and sidecars (each sidecar run from the server's binary here: the
    shape, not the argv, is what rendering depends on)."""
    engine = ENGINES[engine_name]
    version = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}[engine_name]
    volume = Volume(storage_gb)
    ctx = NodeContext(node_id=node_id, version=version, size=SIZES["small"], host="h",
                      port=NODE_PORT, service=Credentials("hoard", "x"),
                      admin=Credentials("admin", "y"))
    server = engine.process(ctx, Paths(volume.path))  # type: ignore[arg-type]
    processes = [server]
    ports = {"client": NODE_PORT}
    if members > 1:
        ha = engine  # every engine here is also its own Replication
        ports |= {name: NODE_PORT + 1 + i for i, name in enumerate(ha.ha_ports)}  # type: ignore[attr-defined]
        processes += [ProcessSpec([*server.argv, f"--{name}"], name=name)
                      for name in ha.sidecars]  # type: ignore[attr-defined]
    size = SIZES["small"]
    return NodeSpec(engine=engine_name, version=version, image=engine.image(version),
                    processes=tuple(processes), ports=ports, volume=volume,
                    resources=Resources(size.cpus, size.memory_mb),
                    readiness=engine.readiness(ctx),
                    owner=Owner(PROJECT, cluster_id, standalone=members == 1))


# Each check reads its schema and the (large) shared definitions from the
# package's files; they never change within a run, so each is read once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents)


def strictly_valid(manifest: dict[str, Any]) -> None:
    """Valid for every version in ``K8S_VERSIONS``, with unknown fields refused
    (the schemas ship inside the kubernetes-validate package: no network)."""
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@dataclass
class MockApi:
    """The emulator, served on loopback from a thread of its own
    (the provider's client is synchronous)."""

    url: str
    handler: Any
    loop: asyncio.AbstractEventLoop

    def objects(self, plural: str) -> dict[str, dict[str, Any]]:
        """The live objects of a kind, by name."""
        found = {}
        for (resource, _ns, name), obj in list(self.handler.objects._objects.items()):
            if resource.plural == plural and not obj.deleted:
                found[name] = obj.raw
        return found

    def call(self, do: Any) -> Any:
        """Run ``do()`` (a coroutine function) on the server's loop: for changes made
        as a controller would (a pod appears, becomes ready)."""
        return asyncio.run_coroutine_threadsafe(do(), self.loop).result(timeout=10)

    def put(self, plural: str, name: str, obj: dict[str, Any], group: str = "",
            version: str = "v1") -> None:
        async def write() -> None:
            self.handler.objects[(group, version, plural), NAMESPACE, name] = \
                self.handler.stamp(obj)
        self.call(write)

    def react(self, criteria: Any, answer: Any) -> None:
        async def add() -> None:
            self.handler[criteria] << answer
        self.call(add)


RESOURCES = {"v1/pods": "Pod", "v1/services": "Service", "v1/secrets": "Secret",
             "v1/endpoints": "Endpoints",
             "v1/persistentvolumeclaims": "PersistentVolumeClaim",
             "apps/v1/statefulsets": "StatefulSet",
             "policy/v1/poddisruptionbudgets": "PodDisruptionBudget",
             "networking.k8s.io/v1/networkpolicies": "NetworkPolicy"}
# Each kind by the plural the emulator's lists go by.
PLURALS = {kind: path.rsplit("/", 1)[1] for path, kind in RESOURCES.items()}


@contextmanager
def mock_api(front: Callable[[Any], Any] | None = None,
             host: str = "127.0.0.1") -> Iterator[MockApi]:
    """The emulator on loopback; with ``front`` (given the emulator's handler,
    a raw aiohttp handler), that handler answers first, on a port of its own
    (what the emulator does not speak: exec, tests/kube_exec.py), at ``host``
    (a test bridge's address, where pods reach it too)."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with VersionedEmulator() as handler, kmock.Server(handler) as server:
            for resource, kind in RESOURCES.items():  # known, as a real server's are
                handler.resources[resource] = {"kind": kind, "namespaced": True}
            url = str(server.url)
            outer = None
            if front is not None:
                outer = aiohttp.test_utils.RawTestServer(front(handler), host=host)
                await outer.start_server()
                url = str(outer.make_url("")).rstrip("/")
            box.update(url=url, handler=handler, loop=asyncio.get_running_loop(),
                       stop=asyncio.Event())
            ready.set()
            await box["stop"].wait()
            if outer is not None:
                await outer.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "the mock API server did not start"
    try:
        yield MockApi(box["url"], box["handler"], box["loop"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def kubeconfig_for(url: str, path: Path) -> Path:
    """A kubeconfig file naming ``url``, as an operator's would (HOARD_KUBECONFIG)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "mock",
        "clusters": [{"name": "mock", "cluster": {"server": url}}],
        "users": [{"name": "hoard", "user": {"token": "mock-token"}}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "hoard",
                                                  "namespace": NAMESPACE}}],
    }))
    return path


def provider_for(kubeconfig: Path, timeout: float = 10.0) -> KubernetesProvider:
    return KubernetesProvider(Kube(config(str(kubeconfig)), NAMESPACE, timeout=timeout),
                              {"postgresql": ["15"], "mariadb": ["10.11"], "redis": ["7.0"]},
                              storage_class="hoard-ssd")


@contextmanager
def emulated_services(api: MockApi, prefix: str, **settings_: Any) -> Iterator[Services]:
    """Hoard's services built in the test's process (a SQLite store in a
    temporary state directory), the Kubernetes provider offered against ``api``
    (``settings_``: more of Hoard's settings)."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp:
        Path(tmp).chmod(0o711)  # the local provider, built too, checks its nodes can reach it
        settings = Settings(state_dir=Path(tmp) / "state", kubernetes_namespace=NAMESPACE,
                            kubeconfig=str(kubeconfig_for(api.url, Path(tmp) / "kubeconfig")),
                            **settings_)
        svc = build(settings)
        try:
            yield svc
        finally:
            svc.store.engine.dispose()


@pytest.fixture()
def api() -> Iterator[MockApi]:
    """The emulator, for one test."""
    with mock_api() as served:
        yield served


@pytest.fixture()
def provider(api: MockApi, tmp_path: Path) -> KubernetesProvider:
    """The provider, through its own client and a kubeconfig naming the emulator."""
    return provider_for(kubeconfig_for(api.url, tmp_path / "kubeconfig"), timeout=5.0)


def running_pod(api: MockApi, name: str, template: dict[str, Any], ready: bool,
                uid: str | None = None) -> None:
    """Write the pod a StatefulSet's ``template`` makes, running (``ready``: its
    containers pass their probes), as the kubelet reports it: the emulator runs
    no controllers. A new ``uid`` is a new pod."""
    status: dict[str, Any] = {"phase": "Running", "containerStatuses": [
        {"name": c["name"], "ready": ready, "image": c["image"], "imageID": "",
         "restartCount": 0, "state": {"running": {}}}
        for c in template["spec"]["containers"]]}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    metadata = {"name": name, "namespace": NAMESPACE, "labels": template["metadata"]["labels"]}
    if uid is not None:
        metadata["uid"] = uid
    api.put("pods", name, {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                           "spec": template["spec"], "status": status})


def held(api: MockApi, node_id: str) -> dict[str, Any]:
    """The node's StatefulSet, checked to hold its volume with a Redis image's
    holder (what ``hold`` makes before bootstrap)."""
    sts: dict[str, Any] = api.objects("statefulsets")[names.node_object(node_id)]
    server, = sts["spec"]["template"]["spec"]["containers"]
    assert tuple(server["command"]) == render.HOLD
    assert server["image"] == ENGINES["redis"].image("7.0")
    assert {"name": "data", "mountPath": "/var/lib/hoard"} in server["volumeMounts"]
    return sts


UNSCHEDULABLE = {"phase": "Pending", "conditions": [
    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
     "message": "0/3 nodes are available: 3 Insufficient memory."}]}


def made_set(api: MockApi, holding: bool) -> dict[str, Any]:
    """The node's StatefulSet once it declares the holder (or, not ``holding``, the
    server's processes)."""
    deadline = time.monotonic() + 30
    while True:
        found = list(api.objects("statefulsets").values())
        if found and (found[0]["spec"]["template"]["spec"]["containers"][0].get("command")
                      == list(render.HOLD)) == holding:
            return copy.deepcopy(found[0])
        assert time.monotonic() < deadline, f"no StatefulSet (holding: {holding})"
        time.sleep(0.05)


def make_pod(api: MockApi, status: dict[str, Any], volume: str | None = None) -> str:
    """Play the StatefulSet controller and the kubelet: once the node's StatefulSet
    is there, write its pod (from its template) with ``status``; the node's id.
    With ``volume``, the node's volume is mounted there first (where the exec
    stand-in runs its commands)."""
    held = made_set(api, holding=True)
    node_id = str(held["metadata"]["labels"][names.NODE])
    assert held["metadata"]["name"] == names.node_object(node_id)
    pod_from_set(api, held, status, volume)
    return node_id


def pod_from_set(api: MockApi, held: dict[str, Any], status: dict[str, Any],
                 volume: str | None = None) -> None:
    """The pod the StatefulSet ``held`` makes, with ``status`` as the kubelet
    reports it; with ``volume``, the node's volume mounted there first."""
    name, template = held["metadata"]["name"], held["spec"]["template"]
    node_id = held["metadata"]["labels"][names.NODE]
    if volume is not None:
        for mount in template["spec"]["containers"][0]["volumeMounts"]:
            if mount["name"] == "data":
                mount["mountPath"] = volume
        api.put("statefulsets", name, held, group="apps")
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": names.pod(node_id), "namespace": NAMESPACE,
                        "labels": template["metadata"]["labels"]},
           "spec": template["spec"], "status": status}
    answer = httpx.post(f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods", json=pod, timeout=5)
    assert answer.status_code < 300, answer.text
