"""The Provider seam's contract, written once and run against every provider this
machine can run: ``local`` always, ``netns`` as root with iproute2, and
``kubernetes`` only where ``HOARD_TEST_KUBECONFIG`` names a real cluster
(skipped otherwise, saying what to set: the emulator runs no pods).

One standalone Redis node per provider, made as a create makes it, lives for
the module; the tests run in file order, each a step of its life (its last
destroys it; the fixture destroys it anyway, whatever failed)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from hoard.domain.nodes import LogSource
from hoard.providers.volumes import GB
from hoard.security.ca import CertificateAuthority
from tests.provider_conformance import (
    CASES,
    KUBECONFIG,
    NO_KUBECONFIG,
    NO_NETNS,
    Case,
    Node,
    make_node,
    netns_possible,
    redis_cli,
    until,
    wait_ready,
)

PROVIDERS = [
    pytest.param("local", id="local"),
    pytest.param("netns", id="netns",
                 marks=pytest.mark.skipif(not netns_possible(), reason=NO_NETNS)),
    pytest.param("kubernetes", id="kubernetes",
                 marks=pytest.mark.skipif(not KUBECONFIG, reason=NO_KUBECONFIG)),
]
STORAGE_GB = 1


@pytest.fixture(scope="module", params=PROVIDERS)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    with CASES[request.param]() as made:
        yield made


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def node(case: Case, ca: CertificateAuthority) -> Iterator[Node]:
    node_id, cluster_id = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        yield make_node(case.provider, ca, node_id, cluster_id, STORAGE_GB)
    finally:
        case.provider.destroy(node_id)
        case.provider.remove_endpoint(cluster_id)  # a cluster's own objects (Kubernetes)


def test_place_gives_storage_and_an_address(case: Case, node: Node) -> None:
    assert node.placement.host and node.placement.port > 0, node.placement
    assert case.provider.has_storage(node.node_id)
    assert node.node_id in case.provider.node_ids()
    assert not case.provider.is_running(node.node_id)  # held or not, nothing runs yet


def test_the_runner_takes_files_and_tools(case: Case, node: Node) -> None:
    runner = node.runner(case.provider)
    scratch = PurePosixPath("conformance")
    runner.write_file(scratch / "a.conf", b"x" * 100_000, mode=0o640)
    assert runner.exists(scratch / "a.conf")
    assert b"".join(runner.read_stream(scratch / "a.conf")) == b"x" * 100_000
    assert runner.write_stream(scratch / "b.part", iter([b"ab", b"cd"])) == 4
    runner.rename(scratch / "b.part", scratch / "b")
    assert runner.list_dir(scratch) == ["a.conf", "b"]
    secret = secrets.token_urlsafe(12)
    assert runner.run(["sh", "-c", 'printf %s "$CONFORMANCE_SECRET"'],
                      env={"CONFORMANCE_SECRET": secret}) == secret
    runner.remove_tree(scratch)
    assert not runner.exists(scratch) and runner.list_dir(scratch) == []


def test_start_brings_the_server_up_once(case: Case, node: Node) -> None:
    assert case.provider.start(node.node_id, node.spec) == ["server"]
    wait_ready(case, node)
    assert case.provider.is_running(node.node_id)
    assert case.provider.start(node.node_id, node.spec) == []  # the same spec: no change
    wait_ready(case, node, timeout=5)


def test_its_logs_are_the_servers(case: Case, node: Node) -> None:
    said = "Ready to accept connections"
    assert said in case.provider.output_tail(node.node_id)
    chunk = case.provider.read_log(node.node_id, LogSource(process="server"), None, 65536)
    assert said in chunk.data.decode(errors="replace") and chunk.end >= len(chunk.data)
    again = case.provider.read_log(node.node_id, LogSource(process="server"), 0, 65536)
    assert said in again.data.decode(errors="replace")


def test_kill_then_stop_keeps_the_data(case: Case, node: Node) -> None:
    """A kill is a lost host: the node stops, or its provider makes it again; a
    stop keeps the storage, and the next start finds the data."""
    provider, node_id = case.provider, node.node_id
    provider.kill(node_id)
    if case.remakes_killed:
        wait_ready(case, node)
    else:
        until(lambda: not provider.is_running(node_id), case.settle, "still running after kill")
        assert provider.start(node_id, node.spec) == ["server"]
        wait_ready(case, node)
    value = secrets.token_hex(8)
    assert redis_cli(provider, node, "SET", "conformance", value) == "OK"
    node.runner(provider).write_file(PurePosixPath("kept"), value.encode())
    provider.stop(node_id)
    until(lambda: not provider.is_running(node_id), case.settle, "still running after stop")
    assert provider.has_storage(node_id)
    provider.stop(node_id)  # idempotent
    assert provider.start(node_id, node.spec) == ["server"]
    wait_ready(case, node)
    assert redis_cli(provider, node, "GET", "conformance") == value
    assert b"".join(node.runner(provider).read_stream(PurePosixPath("kept"))) == value.encode()


def test_storage_grows(case: Case, node: Node) -> None:
    """Online where the provider says so; else it asks for a stop first, and grows
    then, losing nothing."""
    provider, node_id = case.provider, node.node_id
    live = provider.grows_storage_live(node_id)
    growth = provider.grow_storage(node_id, STORAGE_GB + 1)
    if live:
        assert growth.done and growth.online, growth
    elif not growth.done:
        provider.stop(node_id)
        until(lambda: not provider.is_running(node_id), case.settle, "still running after stop")
        assert provider.grow_storage(node_id, STORAGE_GB + 1).done
        assert provider.start(node_id, node.spec) == ["server"]
    wait_ready(case, node)
    usage = provider.storage_usage(node_id, STORAGE_GB + 1)
    if usage is not None:  # None on Kubernetes until the resizer has grown the filesystem
        assert usage.total_bytes > (STORAGE_GB + 0.5) * GB, usage
    assert provider.grow_storage(node_id, STORAGE_GB + 1).done  # idempotent, never shrinks
    assert redis_cli(provider, node, "GET", "conformance")


def test_destroy_leaves_nothing(case: Case, node: Node) -> None:
    provider, node_id = case.provider, node.node_id
    provider.destroy(node_id)
    provider.remove_endpoint(node.cluster_id)
    assert not provider.is_running(node_id)
    until(lambda: node_id not in provider.node_ids() and not provider.has_storage(node_id),
          case.settle, "the node is still listed, or its storage is still there")
    until(lambda: not case.left(node), case.settle, f"left behind: {case.left(node)}")
    provider.destroy(node_id)  # idempotent
