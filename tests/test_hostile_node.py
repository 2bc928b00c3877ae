"""A hostile node: its OS account (what a compromised database server can do)
plants links, FIFOs and forged JSON in the node's directory, swaps directories
for links while Hoard works in them, and runs processes that ignore SIGTERM and
hide from their process group and directory. Hoard (root) must change nothing
outside the node (same owner, mode and content), trust none of it, and still
restart the node within its limits, or stop and destroy it completely.

The node's account is found as the owner of its directory, so these tests say
the same thing about any layout of the local provider."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import psycopg
import pytest

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import Backend, HttpRoleCheck, ProcessSpec
from hoard.providers import cgroups
from hoard.providers.base import Endpoint
from hoard.providers.local import LocalProvider
from hoard.providers.processes import proc_state
from tests.conftest import (
    create_cluster,
    delete_cluster,
    directory_provider,
    hoard_server,
    tenant_uri,
)

SLEEP = ProcessSpec(["/bin/sh", "-c", "echo started; exec sleep 600"])  # a line in its log
# ``conf`` is a directory, then a link to root's directory, over and over.
SWAPPER = """
import os, shutil, sys
while True:
    for step in (lambda: os.mkdir("conf"), lambda: shutil.rmtree("conf"),
                 lambda: os.symlink(sys.argv[1], "conf"), lambda: os.unlink("conf")):
        try:
            step()
        except OSError:
            pass
"""


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    with directory_provider() as made:
        yield made


@pytest.fixture
def node() -> str:
    """A node id no concurrent test run uses (cgroups are named after node ids)."""
    return "n-" + secrets.token_hex(4)


@pytest.fixture
def outside(provider: LocalProvider) -> Path:
    """Root's files outside any node: what a planted link points at."""
    root = provider.nodes_dir.parent / "outside"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "keep").write_text("root's own\n")
    (root / "file").write_text("root's file\n")
    (root / "secret").write_text("root's secret\n")
    (root / "secret").chmod(0o600)
    for path in (root, root / "dir", root / "dir" / "keep", root / "file"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def snapshot(path: Path) -> object:
    """Owner, mode and content of a file or a whole tree (links not followed)."""
    st = os.lstat(path)
    if path.is_dir() and not path.is_symlink():
        content: object = sorted((p.name, snapshot(p)) for p in path.iterdir())
    else:
        content = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return st.st_uid, st.st_gid, st.st_mode, content


def node_dir(provider: LocalProvider, node_id: str) -> Path:
    return Path(provider.runner(node_id).abspath(PurePosixPath(".")))


def as_node(directory: Path, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell script as the node's OS account, in its directory."""
    st = os.stat(directory)
    proc = subprocess.run(["setpriv", f"--reuid={st.st_uid}", f"--regid={st.st_gid}",
                           "--clear-groups", "--", "/bin/sh", "-c", script],
                          cwd=directory, capture_output=True, text=True, timeout=30, check=False)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f}s"
        time.sleep(0.05)


def in_node_cgroups(pid: int, node_id: str, timeout: float = 5) -> bool:
    """The process is in each of the node's cgroups that exist (memory, CPU; a
    process just started may not have joined them yet)."""
    controllers = [c for c in ("memory", "cpu")
                   if Path(f"/sys/fs/cgroup/{c}/hoard/{node_id}").is_dir()]

    def joined() -> bool:
        lines = [line.split(":", 2) for line in
                 Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
        paths = {c: path for _, names, path in lines for c in names.split(",")}
        return all(paths.get(c) == f"/hoard/{node_id}" for c in controllers)
    deadline = time.monotonic() + timeout
    while not joined():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True




def started(provider: LocalProvider, node_id: str, spec: ProcessSpec = SLEEP) -> int:
    provider.place(node_id, set(), 1)
    provider.apply_limits(node_id, SIZES["nano"], 1)
    assert provider.start_process(node_id, spec)
    pid = provider.pid(node_id)
    assert pid is not None
    # Past the root launcher: the server runs as the node's account.
    uid = node_dir(provider, node_id).stat().st_uid
    wait_for(lambda: _uid(pid) == uid, "the server running as the node's account")
    return pid


def killed_by_node(provider: LocalProvider, node_id: str, pid: int, before: str = "") -> None:
    """The node's account runs ``before``, then kill -9s its own server."""
    as_node(node_dir(provider, node_id), f"{before}\nkill -9 {pid}")
    wait_for(lambda: not provider.is_running(node_id), "the server gone")


def test_links_for_log_and_tmp_are_not_followed_when_the_node_restarts(
        provider: LocalProvider, outside: Path, node: str) -> None:
    pid = started(provider, node)
    before = snapshot(outside)
    killed_by_node(provider, node, pid, f"""
        mv log log.old && ln -s {outside / 'dir'} log
        mv tmp tmp.old && ln -s {outside} tmp""")
    assert provider.start_process(node, SLEEP)  # what the observer does
    assert snapshot(outside) == before, "root changed a file outside the node"
    root = node_dir(provider, node)
    assert (root / "log").is_dir() and not (root / "log").is_symlink()
    assert (root / "log" / "server.log").stat().st_uid == root.stat().st_uid
    new = provider.pid(node)
    assert new is not None and new != pid and in_node_cgroups(new, node)


def test_a_log_file_link_is_replaced_not_followed(
        provider: LocalProvider, outside: Path, node: str) -> None:
    pid = started(provider, node)
    before = snapshot(outside)
    killed_by_node(provider, node, pid, f"""
        rm log/server.log && ln -s {outside / 'file'} log/server.log""")
    assert provider.start_process(node, SLEEP)
    new = provider.pid(node)
    assert new is not None
    wait_for(lambda: Path(f"/proc/{new}/cmdline").read_bytes().startswith(b"sleep"),
             "the server's first line written")
    assert snapshot(outside) == before
    assert not (node_dir(provider, node) / "log" / "server.log").is_symlink()


def test_forged_and_garbage_records_in_the_node_directory_are_not_trusted(
        provider: LocalProvider, outside: Path, node: str) -> None:
    """A process record naming another process must neither stop the node from
    starting nor point Hoard's SIGKILL at it; a cgroup record naming a file must
    neither get that file written nor take the server out of its limits."""
    pid = started(provider, node)
    decoy = subprocess.Popen(["/bin/sleep", "600"], start_new_session=True)
    try:
        state = proc_state(decoy.pid)
        assert state is not None
        forged = {"pid": decoy.pid, "start_time": state[1], "stop_signal": 9, "stop_timeout": 0}
        before = snapshot(outside)
        killed_by_node(provider, node, pid, f"""
            echo '{json.dumps(forged)}' > process.json
            echo '{json.dumps(forged)}' > process-sentinel.json
            echo '{json.dumps({"procs": [str(outside / "file")]})}' > cgroups.json
            echo '{{not json' > process-other.json""")
        assert provider.start_process(node, SLEEP), "a forged record kept the node from starting"
        new = provider.pid(node)
        assert new is not None and new != decoy.pid and in_node_cgroups(new, node)
        provider.stop(node)
        provider.kill(node)
        assert decoy.poll() is None, "Hoard killed a process a forged record named"
        assert snapshot(outside) == before
    finally:
        decoy.kill()
        decoy.wait()


def test_hoards_records_are_out_of_the_nodes_reach(provider: LocalProvider, node: str) -> None:
    started(provider, node)
    root = node_dir(provider, node)
    records = provider.private_dir / "nodes" / node
    assert (records / "process.json").exists()
    for script in (f"ls {records}", f"cat {records / 'process.json'}",
                   f"echo '{{}}' > {records / 'process.json'}",
                   f"ls {provider.private_dir}", f"ls {provider.nodes_dir}"):
        assert as_node(root, script, check=False).returncode != 0, script


def test_files_hoard_writes_and_reads_follow_no_planted_link(
        provider: LocalProvider, outside: Path, node: str) -> None:
    started(provider, node)
    runner = provider.runner(node)
    root = node_dir(provider, node)
    before = snapshot(outside)
    as_node(root, f"""
        ln -s {outside / 'dir'} tls
        mkdir conf && ln -s {outside / 'file'} conf/server.conf
        ln -s {outside / 'file'} conf/other.conf.tmp
        mkdir archive && ln -s {outside / 'secret'} archive/000001 && mkfifo archive/000002
        ln -s {outside / 'dir'} binlog
        ln -s {outside / 'dir'} data.init""")
    # A hard link to root's file (which fs.protected_hardlinks keeps the account
    # from making; made here as root, for a host without it).
    os.link(outside / "secret", root / "archive" / "000003")
    runner.write_file(PurePosixPath("tls/server.key"), b"KEY")
    runner.write_file(PurePosixPath("conf/server.conf"), b"port = 1\n")
    runner.write_file(PurePosixPath("conf/other.conf"), b"port = 2\n")
    for name in ("000001", "000002", "000003"):  # links to root's secret; a FIFO (no hang)
        with pytest.raises(OSError):
            b"".join(runner.read_stream(PurePosixPath("archive") / name))
    assert runner.list_dir(PurePosixPath("binlog")) == []
    assert not runner.exists(PurePosixPath("binlog/keep"))
    runner.remove_tree(PurePosixPath("data.init"))
    os.unlink(root / "archive" / "000003")
    assert snapshot(outside) == before, "root changed a file outside the node"
    key = root / "tls" / "server.key"
    assert not (root / "tls").is_symlink() and key.read_bytes() == b"KEY"
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (root.stat().st_uid, 0o600)
    assert (root / "conf" / "server.conf").read_bytes() == b"port = 1\n"
    assert not (root / "data.init").exists() and not (root / "data.init").is_symlink()


def test_directories_swapped_for_links_while_hoard_writes(
        provider: LocalProvider, outside: Path, node: str) -> None:
    """The account swaps ``conf`` between a directory and a link to root's
    directory as fast as it can while Hoard writes into it: a path checked
    first and opened after would be caught between the two."""
    started(provider, node)
    runner = provider.runner(node)
    root = node_dir(provider, node)
    before = snapshot(outside)
    swapper = subprocess.Popen(
        ["setpriv", f"--reuid={root.stat().st_uid}", f"--regid={root.stat().st_gid}",
         "--clear-groups", "--", "/usr/bin/python3", "-c", SWAPPER, str(outside / "dir")],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                runner.write_file(PurePosixPath("conf/raced.conf"), b"x")
    finally:
        swapper.kill()
        swapper.wait()
    assert snapshot(outside) == before, "a write followed a link swapped in mid-way"


def test_a_server_that_ignores_sigterm_and_hides_is_stopped_and_destroyed(
        provider: LocalProvider, node: str) -> None:
    """SIGTERM is ignored; helpers leave the process group (setsid) and the
    directory (cd /). Stop escalates to SIGKILL and finds them by cgroup and by
    account; destroy leaves no process, cgroup, directory, record or account."""
    stubborn = ProcessSpec(["/bin/sh", "-c",
                            "trap '' TERM; cd /; setsid sleep 600 & "
                            "setsid sh -c 'while :; do sleep 1; done' & "
                            "while :; do sleep 1; done"], stop_timeout=1.0)
    pid = started(provider, node, stubborn)
    root = node_dir(provider, node)
    uid = root.stat().st_uid
    account = pwd.getpwuid(uid).pw_name

    def of_node() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _uid(int(p.name)) == uid]
    wait_for(lambda: len(of_node()) >= 4, "the helpers started")
    hidden = [p for p in of_node() if os.getpgid(p) != pid]
    assert hidden and all(Path(f"/proc/{p}/cwd").readlink() == Path("/") for p in hidden)
    assert all(in_node_cgroups(p, node) for p in hidden)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    assert provider.is_running(node), "the stand-in should ignore SIGTERM"
    started_at = time.monotonic()
    provider.stop(node)
    assert time.monotonic() - started_at < 10
    assert of_node() == [], "a process of the node survived stop"
    assert not provider.is_running(node)
    provider.destroy(node)
    assert not root.exists() and not (provider.private_dir / "nodes" / node).exists()
    assert cgroups.procs_files(node) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(account)


def _uid(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    if " Z " in state or "zombie" in state:
        return None
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_destroy_kills_a_stubborn_node_without_stopping_it_first(
        provider: LocalProvider, node: str) -> None:
    started(provider, node, ProcessSpec(["/bin/sh", "-c", "trap '' TERM; cd /; "
                                         "setsid sleep 600 & exec sleep 600"],
                                        stop_timeout=600.0))
    uid = node_dir(provider, node).stat().st_uid
    started_at = time.monotonic()
    provider.destroy(node)
    assert time.monotonic() - started_at < 10, "destroy waited out the stop timeout"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(int(p.name)) == uid]


def test_the_proxys_account_cannot_redirect_hoards_writes(
        provider: LocalProvider, outside: Path) -> None:
    """The endpoint proxy's account plants links at every name Hoard writes or
    stages in its directory and forges a record of its addresses; a reload changes
    nothing outside and binds the addresses Hoard gave it."""
    check = HttpRoleCheck("agent", "/primary", "/replica")
    ca = outside / "ca.pem"
    ca.write_text("not used by plain checks\n")
    backends = [Backend("na", "127.0.0.1", 1, {"agent": 2})]
    endpoint = Endpoint(provider.new_address(), 5432, provider.new_address(), 5432)
    provider.ensure_endpoint("c1", backends, check, str(ca), endpoint)
    directory = provider.endpoints.root / "c1"
    before = snapshot(outside)
    links = " ".join(f"ln -sf {outside / 'file'} {n};" for n in (
        "haproxy.tmp", "haproxy.cfg.tmp", "ca.tmp", "ca.pem.tmp", "servers.state.tmp",
        "servers.tmp"))
    as_node(directory, f"""
        rm -f haproxy.cfg servers.state && ln -s {outside / 'file'} haproxy.cfg
        ln -s {outside / 'secret'} servers.state; {links}
        rm -f endpoint.json
        echo '{{"host": "0.0.0.0", "rw_port": 1, "ro_port": 2}}' > endpoint.json""")
    moved = [*backends, Backend("nb", "127.0.0.1", 3, {"agent": 4})]
    provider.ensure_endpoint("c1", moved, check, str(ca), endpoint)
    assert snapshot(outside) == before, "root changed a file outside the proxy's directory"
    config = (directory / "haproxy.cfg").read_text()
    assert "n-nb" in config
    assert f"bind {endpoint.rw_host}:5432" in config
    assert f"bind {endpoint.ro_host}:5432" in config
    assert provider.endpoint_running("c1")


def test_a_hostile_postgresql_node_is_restarted_by_the_observer_within_its_limits() -> None:
    """End to end, a real server under ``hoard serve``: its account plants links
    for log/ and tmp/ and forged records, then kills the server. The observer
    starts it again, in its cgroups, and nothing outside the node changes."""
    with hoard_server() as server, server.client() as client:
        outside = server.state_dir / "outside"
        (outside / "dir").mkdir(parents=True)
        (outside / "dir" / "keep").write_text("root's own\n")
        (outside / "file").write_text("root's file\n")
        outside.chmod(0o755)
        (outside / "dir").chmod(0o755)
        cluster = create_cluster(client, "hostile")
        node_id = cluster["members"][0]["id"]
        root = server.state_dir / "nodes" / node_id
        postmaster = root / "data" / "postmaster.pid"  # the server's pid, in any layout

        def server_pid() -> int:
            return int(postmaster.read_text().split()[0])
        pid = server_pid()
        before = snapshot(outside)
        forged = {"pid": os.getpid(), "start_time": 0, "stop_signal": 9, "stop_timeout": 0}
        as_node(root, f"""
            mv log log.old && ln -s {outside / 'dir'} log
            mv tmp tmp.old 2>/dev/null; ln -s {outside} tmp
            echo '{json.dumps({"procs": [str(outside / "file")]})}' > cgroups.json
            echo '{json.dumps(forged)}' > process.json
            kill -9 {pid}""")

        def restarted() -> bool:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return server_pid() != pid and _uid(server_pid()) is not None
            return False
        wait_for(restarted, "the observer's restart")
        new = server_pid()
        uri = tenant_uri(client, cluster["id"])
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(uri, connect_timeout=3) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the restarted server never answered"
                time.sleep(0.2)
        assert snapshot(outside) == before, "root changed a file outside the node"
        assert in_node_cgroups(new, node_id)
        assert not (root / "log").is_symlink()
        if os.path.ismount(root):  # a filesystem of its own: nothing on it raises privileges
            options = next(line.split()[3] for line in Path("/proc/mounts").read_text()
                           .splitlines() if line.split()[1] == str(root))
            assert {"nosuid", "nodev"} <= set(options.split(","))
        for script in ("cat state.sqlite", "cat secret.key", "ls private", "ls ."):
            assert as_node(root, f"cd {server.state_dir} && {script}", check=False).returncode, \
                script
        account = pwd.getpwuid(root.stat().st_uid).pw_name
        delete_cluster(client, cluster["id"])
        with pytest.raises(KeyError):
            pwd.getpwnam(account)


def test_a_reader_that_never_ends_does_not_hang_a_start(provider: LocalProvider, node: str) -> None:
    """A FIFO where the log directory's files go (no reader on the other end)."""
    pid = started(provider, node)
    killed_by_node(provider, node, pid, "rm -f log/server.log && mkfifo log/server.log")
    done = threading.Event()
    threading.Thread(target=lambda: (provider.start_process(node, SLEEP), done.set()),
                     daemon=True).start()
    assert done.wait(15), "starting the node hung on a FIFO"
