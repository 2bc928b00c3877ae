"""What the provider conformance suite needs: each provider as Hoard builds it
from its settings (``PROVIDERS``), what each may do where the seam leaves a
choice, what "nothing left" means on each, and a standalone Redis node made
the way a create makes one (place, hold, bootstrap and TLS through the runner,
then start).

The node's declaration mirrors ``members.node_spec`` for a standalone node
(the workflows' own needs Hoard's store and services, which a provider test
does without)."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import NodeRunner, NodeSecrets, NodeSpec, Owner, Resources, Volume
from hoard.engines.base import TLS_CA, Credentials, NodeContext
from hoard.engines.redis import REDIS_CLI, Redis
from hoard.engines.registry import ENGINES
from hoard.providers.base import Placement, Provider
from hoard.security.ca import CertificateAuthority
from hoard.settings import Settings
from hoard.workflows.services import PROVIDERS
from tests.conftest import make_state_dir, remove_state_dir

KUBECONFIG = os.environ.get("HOARD_TEST_KUBECONFIG")
NO_KUBECONFIG = ("HOARD_TEST_KUBECONFIG is not set: set it to a kubeconfig of a real cluster "
                 "(and HOARD_TEST_KUBERNETES_NAMESPACE, default hoard-conformance, a namespace "
                 "with the rights of deploy/kubernetes/rbac.yaml) to run the Kubernetes "
                 "provider's live tests; no API server runs on this machine, and kmock's "
                 "emulator runs no pods")
NO_NETNS = "the netns provider needs root and iproute2 (ip netns)"
PROJECT = "0190a3b4-0000-7000-8000-00000000c0fe"
ENGINE: Redis = ENGINES["redis"]  # type: ignore[assignment]


def netns_possible() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class Case:
    """One provider under the contract, and what the contract lets it choose."""

    name: str
    provider: Provider
    reaches_nodes: bool  # the test process reaches node addresses (else: exec in the node)
    remakes_killed: bool  # a killed node is made again by the provider itself
    settle: float  # how long a stop, a kill or a delete may take to show
    left: Callable[[Node], list[str]]  # what is left of a destroyed node, beyond storage


def local_left(node: Node) -> list[str]:
    """A local node leaves no directory, no mount and no OS account."""
    assert node.root is not None and node.user is not None
    left = []
    if node.root.exists():
        left.append(f"directory {node.root}")
    if f" {node.root} " in Path("/proc/mounts").read_text():
        left.append(f"mount {node.root}")
    try:
        pwd.getpwnam(node.user)
        left.append(f"OS account {node.user}")
    except KeyError:
        pass
    return left


def netns_left(node: Node) -> list[str]:
    """A netns node leaves what a local one does not, nor its namespace."""
    ns = f"hoard-{node.node_id}"
    return local_left(node) + ([f"namespace {ns}"] if ns in namespaces() else [])


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


@contextmanager
def local_case() -> Iterator[Case]:
    """The local provider from default settings but its state directory."""
    state = make_state_dir()
    provider = PROVIDERS["local"](Settings(state_dir=state, provider="local"))
    assert provider is not None
    try:
        yield Case("local", provider, reaches_nodes=True, remakes_killed=False,
                   settle=10.0, left=local_left)
    finally:
        remove_state_dir(state)


@contextmanager
def netns_case() -> Iterator[Case]:
    """The netns provider on a private network of its own (its bridge removed after;
    10.220-254 so as not to meet tests/test_netns_provider.py's)."""
    state = make_state_dir()
    network = f"10.{220 + secrets.randbelow(35)}.0.0/16"
    provider = PROVIDERS["netns"](Settings(state_dir=state, provider="netns",
                                           netns_network=network))
    assert provider is not None
    bridge = getattr(provider, "bridge")  # noqa: B009 (the NetnsProvider's own)
    try:
        yield Case("netns", provider, reaches_nodes=True, remakes_killed=False,
                   settle=10.0, left=netns_left)
    finally:
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        remove_state_dir(state)


@contextmanager
def kubernetes_case(kubeconfig: str | None = None, namespace: str | None = None,
                    name: str = "kubernetes") -> Iterator[Case]:
    """The Kubernetes provider from settings naming a kubeconfig (the test's unless
    given); the namespace, storage class and image registry from
    HOARD_TEST_KUBERNETES_NAMESPACE, ..._STORAGE_CLASS (default: the cluster's)
    and ..._REGISTRY (where the images built from images/ are)."""
    kubeconfig = kubeconfig or KUBECONFIG
    assert kubeconfig is not None
    settings = Settings(
        state_dir=Path(tempfile.gettempdir()), provider="kubernetes", kubeconfig=kubeconfig,
        kubernetes_namespace=namespace or os.environ.get("HOARD_TEST_KUBERNETES_NAMESPACE",
                                                         "hoard-conformance"),
        kubernetes_storage_class=os.environ.get("HOARD_TEST_KUBERNETES_STORAGE_CLASS"),
        kubernetes_registry=os.environ.get("HOARD_TEST_KUBERNETES_REGISTRY", ""),
        kubernetes_versions="redis=7.0")
    provider = PROVIDERS["kubernetes"](settings)
    assert provider is not None
    yield Case(name, provider, reaches_nodes=False, remakes_killed=True,
               settle=180.0, left=lambda node: kube_left(provider, node.node_id))


def kube_left(provider: Provider, node_id: str) -> list[str]:
    """Every kind the provider makes, and pods, listed by the node's label."""
    from hoard.providers.kubernetes import names
    from hoard.providers.kubernetes.client import KINDS

    kube = provider.kube  # type: ignore[attr-defined]
    labels = {names.NODE: node_id}
    return [f"{kind} {name}" for kind in (*KINDS, "Pod") for name in kube.names(kind, labels)]


CASES: dict[str, Callable[[], AbstractContextManager[Case]]] = {
    "local": local_case, "netns": netns_case, "kubernetes": kubernetes_case}


def until(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``done()`` until it holds; a provider's changes may show after a while."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@dataclass
class Node:
    """A placed, bootstrapped Redis node and what a test needs to reach it."""

    node_id: str
    cluster_id: str
    placement: Placement
    ctx: NodeContext
    spec: NodeSpec
    ca_file: str
    root: Path | None = None  # a local node's directory, as the host sees it
    user: str | None = None  # a local node's OS account

    def runner(self, provider: Provider) -> NodeRunner:
        return provider.runner(self.node_id)


def declare(provider: Provider, node_id: str, cluster_id: str, ctx: NodeContext,
            storage_gb: int) -> NodeSpec:
    """A standalone node as ``members.node_spec`` declares it."""
    size = ctx.size
    return NodeSpec(
        engine=ENGINE.name, version=ctx.version, image=ENGINE.image(ctx.version),
        processes=(ENGINE.process(ctx, provider.runner(node_id)),),
        ports={"client": ctx.port}, volume=Volume(storage_gb),
        resources=Resources(size.cpus, size.memory_mb), readiness=ENGINE.readiness(ctx),
        owner=Owner(PROJECT, cluster_id, True), uses_dcs=False)


def make_node(provider: Provider, ca: CertificateAuthority, node_id: str, cluster_id: str,
              storage_gb: int) -> Node:
    """What a create does before its start: place (the cluster's own address on the
    engine's standard port, as ``place_nodes``), limits, hold, bootstrap, TLS
    (published, then written through the runner), configuration."""
    placement = provider.place(node_id, set(), storage_gb, (), (),
                               (provider.new_address(), ENGINE.standard_port))
    provider.apply_limits(node_id, SIZES["nano"], storage_gb)
    ctx = NodeContext(node_id=node_id, version=provider.versions(ENGINE)[0],
                      size=SIZES["nano"], host=placement.host, port=placement.port,
                      service=Credentials("hoard", secrets.token_urlsafe(16)),
                      admin=Credentials("admin", secrets.token_urlsafe(16)),
                      storage_gb=storage_gb, listen=provider.listen_host(placement.host))
    spec = declare(provider, node_id, cluster_id, ctx, storage_gb)
    if provider.holds:
        provider.hold(node_id, spec)
    runner = provider.runner(node_id)
    ENGINE.bootstrap(ctx, runner)
    cert = ca.issue_server_cert(node_id, [placement.host, "localhost"])
    provider.publish_secrets(node_id, Owner(PROJECT, cluster_id, True),
                             NodeSecrets(cert.cert_pem, cert.key_pem, ca.cert_pem,
                                         ctx.service.user, ctx.service.password))
    ENGINE.install_tls(runner, cert.cert_pem, cert.key_pem, ca.cert_pem)
    ENGINE.configure(ctx, runner)
    node = Node(node_id, cluster_id, placement, ctx, spec, str(ca.cert_path))
    node_user = getattr(provider, "node_user", None)
    if node_user is not None:  # the local providers: a directory and an account
        node.root = Path(runner.abspath(PurePosixPath(".")))
        node.user = node_user(node_id).name
    return node


def redis_cli(provider: Provider, node: Node, *args: str) -> str:
    """A command to the node's server by redis-cli beside it, over TLS with Hoard's CA,
    as Hoard's account: its password in the environment only."""
    runner = provider.runner(node.node_id)
    return runner.run([REDIS_CLI, "--tls", "--cacert", runner.abspath(TLS_CA),
                       "-h", node.ctx.host, "-p", str(node.ctx.port),
                       "--user", node.ctx.service.user, "--no-auth-warning", *args],
                      timeout=30, env={"REDISCLI_AUTH": node.ctx.service.password}).strip()


def answers(case: Case, node: Node) -> str:
    """The node's readiness as the create's wait asks it (the engine's health over
    TLS) where the test reaches the node; else a PING over TLS from inside it. ""
    when ready, else why not."""
    if case.reaches_nodes:
        health = ENGINE.health(node.ctx, node.ca_file, timeout=2)
        return "" if health.ok else health.detail
    try:
        said = redis_cli(case.provider, node, "PING")
    except Exception as exc:  # not running yet: the exec or the tool fails
        return str(exc)
    return "" if said == "PONG" else said


def wait_ready(case: Case, node: Node, timeout: float | None = None) -> None:
    """Until the node answers, within the provider's start deadline; the server's
    own words when it does not."""
    deadline = time.monotonic() + (timeout or case.provider.deadlines.start)
    why = answers(case, node)
    while why:
        if time.monotonic() > deadline:
            tail = case.provider.output_tail(node.node_id)
            raise AssertionError(f"{case.name}: node not ready: {why}\n{tail}")
        time.sleep(0.2)
        why = answers(case, node)
