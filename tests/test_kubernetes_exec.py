"""The Kubernetes provider's runner: every file and tool operation by exec into
the node's pod, and the order that makes a pod exist before bootstrap (place,
hold, then start).

The provider talks to kmock's emulator for its objects and to a stand-in for
the kubelet's exec (tests/kube_exec.py) for its commands, both through its own
lightkube client and websocket, from a kubeconfig file; the stand-in runs each
command locally, in a temporary directory that plays the node's volume (the
node's declaration mounts it at its own path)."""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest

from hoard.domain.nodes import LogChunk, LogSource, NodeSpec, Volume
from hoard.providers.base import Deadlines
from hoard.providers.kubernetes import names, render
from hoard.providers.kubernetes.channels import ExecFailed
from hoard.providers.kubernetes.client import KubeError
from hoard.providers.kubernetes.execrunner import ExecRunner
from hoard.providers.kubernetes.provider import KubernetesProvider
from hoard.providers.runner import ToolFailed
from tests.kube_exec import V4, StandInExec
from tests.kube_support import NAMESPACE, MockApi, kubeconfig_for, mock_api, node_spec, provider_for

CLUSTER = "0190a3b4-0000-7000-8000-0000000000e1"
NODE = "0190a3b4-0000-7000-8000-0000000000e2"
SECRET = "s3cret-Value-9f2c"


@pytest.fixture()
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


class Served:
    """The emulator, the exec stand-in in front of it, and the provider."""

    def __init__(self, api: MockApi, standin: StandInExec, provider: KubernetesProvider,
                 volume: Path) -> None:
        self.api, self.standin, self.provider, self.volume = api, standin, provider, volume

    def spec(self, engine: str = "redis") -> NodeSpec:
        """The node as its engine declares it, its volume mounted where the stand-in's
        directory is."""
        return replace(node_spec(engine, NODE, CLUSTER), volume=Volume(10, str(self.volume)))

    def held(self) -> ExecRunner:
        """Place and hold the node; the pod runs (as its StatefulSet would make it)."""
        self.provider.place(NODE, set(), 10)
        self.provider.hold(NODE, self.spec())
        make_pod(self.api)
        runner = self.provider.runner(NODE)
        assert isinstance(runner, ExecRunner)
        return runner


def serve(tmp_path: Path, volume: Path, protocols: tuple[str, ...] | None = None) -> Iterator[
        Served]:
    box: dict[str, MockApi] = {}
    standin = StandInExec(pods=lambda: box["api"].objects("pods"))
    if protocols:
        standin.protocols = protocols
    with mock_api(front=standin.front) as api:
        box["api"] = api
        provider = provider_for(kubeconfig_for(api.url, tmp_path / "kubeconfig"), timeout=5.0)
        provider.deadlines = Deadlines(start=10.0, join=10.0, form=10.0)
        yield Served(api, standin, provider, volume)


@pytest.fixture()
def served(tmp_path: Path, volume: Path) -> Iterator[Served]:
    yield from serve(tmp_path, volume)


def make_pod(api: MockApi, running: bool = True) -> None:
    """The pod the node's StatefulSet makes from its template, as the kubelet
    reports it (the emulator runs no controllers), written through the API."""
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    template = sts["spec"]["template"]
    containers = template["spec"]["containers"]
    state: dict[str, Any] = {"running": {}} if running else {"waiting": {
        "reason": "ContainerCreating"}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": names.pod(NODE), "namespace": NAMESPACE,
                        "labels": template["metadata"]["labels"]},
           "spec": template["spec"],
           "status": {"phase": "Running" if running else "Pending",
                      "conditions": [{"type": "Ready", "status": "False"}],
                      "containerStatuses": [{"name": c["name"], "ready": False, "image": c["image"],
                                             "imageID": "", "restartCount": 0, "state": state}
                                            for c in containers]}}
    base = f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods"
    if names.pod(NODE) in api.objects("pods"):
        httpx.delete(f"{base}/{names.pod(NODE)}", timeout=5)
    answer = httpx.post(base, json=pod, timeout=5)
    assert answer.status_code < 300, answer.text


# --- the seam's order ---

def test_place_and_hold_make_a_pod_that_waits_then_start_declares_it(served: Served) -> None:
    provider, api = served.provider, served.api
    provider.place(NODE, set(), 10)
    assert api.objects("statefulsets") == {}  # place alone: the volume and the name
    spec = served.spec()
    provider.hold(NODE, spec)
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    pod = sts["spec"]["template"]["spec"]
    server, = pod["containers"]
    assert server["name"] == "server" and tuple(server["command"]) == render.HOLD
    assert server["image"] == spec.image  # the node's own image: nothing else is pulled
    assert "readinessProbe" not in server
    assert {"name": "data", "mountPath": str(served.volume)} in server["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": names.claim(NODE)}} in (
        pod["volumes"])
    assert server["resources"]["limits"]["memory"] == f"{spec.resources.memory_mb}Mi"
    assert sts["metadata"]["labels"][names.CLUSTER] == CLUSTER

    provider.hold(NODE, spec)  # again: nothing changes
    assert api.objects("statefulsets")[names.node_object(NODE)] == sts
    make_pod(api)
    assert not provider.is_running(NODE)  # a holder runs none of the node's processes
    provider.runner(NODE).write_file(PurePosixPath("conf/redis.conf"), b"port 6379\n")

    assert provider.start(NODE, spec) == ["server"]
    # The holder's pod is still there until the StatefulSet replaces it: the
    # server is on its way (a start just made is not a server that exited).
    assert provider.is_running(NODE)
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    server, = sts["spec"]["template"]["spec"]["containers"]
    assert server["command"] == list(spec.processes[0].argv)
    assert "readinessProbe" in server
    assert (served.volume / "conf/redis.conf").read_bytes() == b"port 6379\n"


def test_a_started_node_is_not_held_again(served: Served) -> None:
    served.provider.place(NODE, set(), 10)
    served.provider.start(NODE, served.spec())
    declared = served.api.objects("statefulsets")[names.node_object(NODE)]
    served.provider.hold(NODE, served.spec())
    assert served.api.objects("statefulsets")[names.node_object(NODE)] == declared


def test_the_runner_waits_for_its_pod_to_run(served: Served) -> None:
    served.provider.place(NODE, set(), 10)
    served.provider.hold(NODE, served.spec())
    make_pod(served.api, running=False)
    threading.Timer(0.5, make_pod, (served.api,)).start()
    started = time.monotonic()
    assert served.provider.runner(NODE).list_dir(PurePosixPath(".")) == []
    assert time.monotonic() - started >= 0.4


def test_a_pod_that_never_runs_times_out_with_the_reason(served: Served) -> None:
    served.provider.place(NODE, set(), 10)
    served.provider.hold(NODE, served.spec())
    make_pod(served.api, running=False)
    served.provider.deadlines = Deadlines(start=1.0)
    with pytest.raises(TimeoutError, match="ContainerCreating"):
        served.provider.runner(NODE).exists(PurePosixPath("x"))
    assert served.standin.calls == []


# --- files ---

def test_files_are_written_renamed_listed_and_removed(served: Served) -> None:
    runner = served.held()
    runner.write_file(PurePosixPath("a/b/c.conf"), b"one", mode=0o640)
    assert (served.volume / "a/b/c.conf").read_bytes() == b"one"
    assert (served.volume / "a/b/c.conf").stat().st_mode & 0o777 == 0o640
    assert runner.exists(PurePosixPath("a/b/c.conf"))
    assert not runner.exists(PurePosixPath("a/b/none"))
    runner.write_file(PurePosixPath("a/b/c.conf"), b"two")  # replaced whole
    assert b"".join(runner.read_stream(PurePosixPath("a/b/c.conf"))) == b"two"
    runner.rename(PurePosixPath("a/b/c.conf"), PurePosixPath("d/e.conf"))
    assert runner.list_dir(PurePosixPath("a/b")) == []
    assert runner.list_dir(PurePosixPath("d")) == ["e.conf"]
    assert runner.list_dir(PurePosixPath("missing")) == []
    runner.write_file(PurePosixPath("odd name\nwith a newline"), b"")
    assert "odd name\nwith a newline" in runner.list_dir(PurePosixPath("."))
    for odd in ("-rf", "--help", "-n"):  # never an option to the commands
        runner.write_file(PurePosixPath(odd), b"dash", mode=0o600)
        assert runner.exists(PurePosixPath(odd))
        assert b"".join(runner.read_stream(PurePosixPath(odd))) == b"dash"
    runner.rename(PurePosixPath("-rf"), PurePosixPath("-x/-y"))
    assert runner.list_dir(PurePosixPath("-x")) == ["-y"]
    runner.remove_tree(PurePosixPath("-x"))
    runner.remove_tree(PurePosixPath("-n"))
    assert (served.volume / "--help").read_bytes() == b"dash"
    runner.remove_tree(PurePosixPath("d"))
    runner.remove_tree(PurePosixPath("d"))  # missing is fine
    assert not runner.exists(PurePosixPath("d"))
    assert runner.abspath(PurePosixPath("data/x")) == f"{served.volume}/data/x"
    assert runner.abspath(PurePosixPath(".")) == str(served.volume)
    with pytest.raises(ToolFailed, match="cat exited"):
        list(runner.read_stream(PurePosixPath("never-written")))


def test_a_stream_is_written_in_bounded_memory_and_read_back(served: Served) -> None:
    runner = served.held()
    piece = bytes(range(256)) * 4096  # 1 MiB
    tracemalloc.start()
    try:
        written = runner.write_stream(PurePosixPath("big/data"), (piece for _ in range(48)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == 48 * len(piece)
    assert (served.volume / "big/data").stat().st_size == written
    assert peak < 20 * 2**20, f"{peak / 2**20:.1f} MiB held for a 48 MiB stream"
    digest, total = hashlib.sha256(), 0
    for chunk in runner.read_stream(PurePosixPath("big/data")):
        digest.update(chunk)
        total += len(chunk)
    assert total == written
    assert digest.digest() == hashlib.sha256(piece * 48).digest()


def test_a_failed_stream_leaves_nothing(served: Served) -> None:
    runner = served.held()
    runner.write_file(PurePosixPath("conf/kept"), b"old")

    def broken() -> Iterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionError("the backup store went away")

    with pytest.raises(ConnectionError):
        runner.write_stream(PurePosixPath("conf/kept"), broken())
    with pytest.raises(ConnectionError):
        runner.write_stream(PurePosixPath("conf/new"), broken())
    assert runner.list_dir(PurePosixPath("conf")) == ["kept"]  # no staging file either
    assert (served.volume / "conf/kept").read_bytes() == b"old"


def test_paths_that_leave_the_volume_are_refused_before_any_exec(served: Served) -> None:
    runner = served.held()
    before = len(served.standin.calls)
    for path in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="leaves"):
            runner.write_file(PurePosixPath(path), b"x")
        with pytest.raises(ValueError, match="leaves"):
            runner.exists(PurePosixPath(path))
        with pytest.raises(ValueError, match="leaves"):
            runner.rename(PurePosixPath("a"), PurePosixPath(path))
    with pytest.raises(ValueError, match="itself"):
        runner.remove_tree(PurePosixPath("."))
    assert len(served.standin.calls) == before
    assert not Path("/x").exists() or Path("/x").is_dir()


def test_a_log_file_on_the_volume_is_read_by_range(served: Served) -> None:
    runner = served.held()
    slow = LogSource(path=PurePosixPath("log/slow.log"))
    runner.write_file(PurePosixPath("log/slow.log"), b"0123456789")
    read = served.provider.read_log
    assert read(NODE, slow, None, 4) == LogChunk(b"6789", 6, 10)  # its last bytes
    assert read(NODE, slow, 2, 3) == LogChunk(b"234", 2, 5)
    assert read(NODE, slow, 10, 3) == LogChunk(b"", 10, 10)  # nothing new yet
    assert read(NODE, slow, 50, 3) == LogChunk(b"012", 0, 3)  # cut since: from its start
    assert read(NODE, LogSource(path=PurePosixPath("log/none.log")), None, 9) == LogChunk(
        b"", 0, 0)
    (served.volume / "log/link.log").symlink_to(served.volume / "log/slow.log")
    assert read(NODE, LogSource(path=PurePosixPath("log/link.log")), None, 9) == LogChunk(
        b"", 0, 0)  # a link is never followed
    with pytest.raises(ValueError, match="leaves"):
        read(NODE, LogSource(path=PurePosixPath("../etc/passwd")), None, 9)


# --- tools ---

def test_run_returns_output_and_a_failure_carries_its_stderr(served: Served) -> None:
    runner = served.held()
    assert runner.run(["sh", "-c", "pwd; echo out"]) == f"{served.volume}\nout\n"
    with pytest.raises(ToolFailed, match=r"sh exited 4: oops"):
        runner.run(["sh", "-c", "echo fine; echo oops >&2; exit 4"])
    with pytest.raises(ToolFailed, match="exited 124"):  # cut short in the pod as well
        runner.run(["sleep", "30"], timeout=1)


def test_secrets_go_through_stdin_never_argv(served: Served) -> None:
    runner = served.held()
    runner.write_file(PurePosixPath("secrets/pass"), f"password={SECRET}\n".encode())
    out = runner.run(["sh", "-c", 'printf %s "$PGPASSWORD"'],
                     env={"PGPASSWORD": SECRET, "OTHER": "a b=c 'd'"})
    assert out == SECRET
    assert b"".join(runner.stream(["sh", "-c", 'printf %s "$OTHER"'],
                                  env={"OTHER": SECRET})) == SECRET.encode()
    assert runner.feed(["sh", "-c", 'cat > fed; printf %s "$K"'], [b"data"],
                       env={"K": SECRET}) == SECRET
    assert served.standin.calls
    for call in served.standin.calls:
        assert not any(SECRET in arg for arg in call.argv), call.argv
    before = len(served.standin.calls)
    with pytest.raises(ValueError, match="more than one line"):
        runner.run(["true"], env={"X": "two\nlines"})
    with pytest.raises(ValueError, match="not a name"):
        runner.stream(["true"], env={"X;rm": "v"})
    assert len(served.standin.calls) == before  # refused before anything ran


def test_a_stream_that_ends_early_raises_after_its_last_chunk(served: Served) -> None:
    runner = served.held()
    got = []
    with pytest.raises(ToolFailed, match="exited 3: cut"):
        for chunk in runner.stream(["sh", "-c", "printf abc; echo cut >&2; exit 3"]):
            got.append(chunk)
    assert b"".join(got) == b"abc"
    assert b"".join(runner.stream(["sh", "-c", "printf whole"])) == b"whole"


def test_feed_streams_stdin_while_reading_output(served: Served) -> None:
    runner = served.held()
    piece = b"y" * 2**20
    # cat writes as it reads: 16 MiB each way, which no buffer on the way holds.
    out = runner.feed(["sh", "-c", "tee fed | wc -c"], (piece for _ in range(16)))
    assert out.strip() == str(16 * len(piece))
    assert (served.volume / "fed").stat().st_size == 16 * len(piece)
    with pytest.raises(ToolFailed, match="exited 2"):
        runner.feed(["sh", "-c", "head -c 10 >/dev/null; exit 2"], (piece for _ in range(8)))


def test_exec_into_a_container_or_pod_that_is_not_there_is_refused(served: Served) -> None:
    runner = served.held()
    assert not runner.exists(PurePosixPath("x"))  # the pod is waited for once, here
    served.provider.kube.kill_pod(names.pod(NODE))
    with pytest.raises(KubeError, match="404"):
        runner.exists(PurePosixPath("x"))  # gone since: the API server says so
    make_pod(served.api)
    with (pytest.raises(KubeError, match="400"),
          served.provider.kube.exec(names.pod(NODE), "sidecar", ["true"], False)):
        pass


def test_an_api_server_that_cannot_close_stdin_is_refused_with_why(tmp_path: Path,
                                                                    volume: Path) -> None:
    for served in serve(tmp_path, volume, protocols=(V4,)):
        runner = served.held()
        assert not runner.exists(PurePosixPath("x"))  # no stdin: v4 does
        assert runner.run(["echo", "hi"]) == "hi\n"
        with pytest.raises(ExecFailed, match=r"v5\.channel\.k8s\.io"):
            runner.write_file(PurePosixPath("x"), b"x")
        assert not (volume / "x").exists()
