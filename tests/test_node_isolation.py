"""One OS account per node (and per endpoint proxy): a compromised server reads
its own files only, never another tenant's data, key or configuration. The
accounts come from the configured uid range, are re-adopted by a restarted
Hoard and removed with their node."""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
from pydantic import ValidationError

from hoard.domain.nodes import HttpRoleCheck, ProcessSpec
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis
from hoard.providers import osusers
from hoard.providers.base import Endpoint
from hoard.providers.local import LocalProvider
from hoard.providers.processes import proc_state
from hoard.settings import Settings
from tests.conftest import directory_provider
from tests.engine_harness import running_node

SMALL_RANGE = (270000, 270001)  # outside the default range: no other test takes these


def as_uid(uid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    gid = pwd.getpwuid(uid).pw_gid
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           "--", *argv], capture_output=True, text=True, timeout=30, check=False)


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    with directory_provider() as made:
        yield made


def test_one_nodes_account_cannot_read_another_nodes_data_key_or_config() -> None:
    with running_node(PostgreSQL()) as pg, running_node(Redis()) as redis:
        pg_dir = Path(pg.provider.runner(pg.ctx.node_id).abspath(PurePosixPath(".")))
        redis_dir = Path(redis.provider.runner(redis.ctx.node_id).abspath(PurePosixPath(".")))
        pg_uid, redis_uid = pg_dir.stat().st_uid, redis_dir.stat().st_uid
        assert pg_uid != redis_uid and 0 not in (pg_uid, redis_uid)
        for directory, uid, node in ((pg_dir, pg_uid, pg), (redis_dir, redis_uid, redis)):
            assert directory.stat().st_mode & 0o777 == 0o700
            assert 200000 <= uid <= 265535  # the default HOARD_DB_UID_RANGE
            pid = node.provider.pid(node.ctx.node_id)
            assert pid is not None and uid_of(pid) == uid  # the server runs as its node's account
        theirs = {
            pg_uid: [redis_dir / "tls/server.key", redis_dir / "conf/redis.conf",
                     redis_dir / "data"],
            redis_uid: [pg_dir / "tls/server.key", pg_dir / "data/postgresql.conf",
                        pg_dir / "data/PG_VERSION"],
        }
        for uid, paths in theirs.items():
            for path in paths:
                assert path.exists(), path
                denied = as_uid(uid, "ls", str(path)) if path.is_dir() else \
                    as_uid(uid, "cat", str(path))
                assert denied.returncode != 0 and "Permission denied" in denied.stderr, path
        # Each still reads its own key.
        assert as_uid(pg_uid, "cat", str(pg_dir / "tls/server.key")).returncode == 0
        assert as_uid(redis_uid, "cat", str(redis_dir / "tls/server.key")).returncode == 0
        # Nor the node directories' list, Hoard's records or its CA key.
        state = pg_dir.parent.parent
        for path in (pg_dir.parent, state / "private", state / "ca" / "ca-key.pem"):
            assert as_uid(pg_uid, "ls", str(path)).returncode != 0 or \
                as_uid(pg_uid, "cat", str(path)).returncode != 0, path


def test_accounts_come_from_the_range_and_go_with_their_node(provider: LocalProvider) -> None:
    if any(_taken(uid) for uid in range(SMALL_RANGE[0], SMALL_RANGE[1] + 1)):
        pytest.skip(f"uids {SMALL_RANGE} are in use on this host")
    provider.users.lo, provider.users.hi = SMALL_RANGE
    a, b, c = (f"iso-{secrets.token_hex(4)}" for _ in range(3))
    provider.place(a, set(), 1)
    provider.place(b, set(), 1)
    users = {n: provider.node_user(n) for n in (a, b)}
    assert {u.uid for u in users.values()} == set(range(SMALL_RANGE[0], SMALL_RANGE[1] + 1))
    for node_id, user in users.items():
        entry = pwd.getpwuid(user.uid)
        assert (entry.pw_gid, entry.pw_dir, entry.pw_shell) == (
            user.uid, "/nonexistent", "/usr/sbin/nologin")
        assert entry.pw_gecos == f"hoard node {node_id}"
        assert grp.getgrgid(user.gid).gr_name == user.name
    assert provider.place(a, set(), 1) and provider.node_user(a) == users[a]  # idempotent
    with pytest.raises(RuntimeError, match="no free uid"):
        provider.place(c, set(), 1)
    # What the account left in shared temporary places goes with it.
    leftovers = [Path(d) / f"hoard-test-{a}" for d in ("/dev/shm", "/tmp")]  # noqa: S108
    for path in leftovers:
        assert as_uid(users[a].uid, "touch", str(path)).returncode == 0
    provider.destroy(a)
    for path in leftovers:
        assert not path.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(users[a].name)
    with pytest.raises(KeyError):
        grp.getgrnam(users[a].name)
    provider.place(c, set(), 1)  # a uid is free again
    assert provider.node_user(c).uid == users[a].uid


def test_accounts_made_at_once_are_distinct_and_one_per_node(provider: LocalProvider) -> None:
    """Twelve nodes placed at once, each twice: twelve accounts, twelve uids (the
    uid is handed out under the lock, the tool runs queued in its child)."""
    nodes = [f"iso-{secrets.token_hex(4)}" for _ in range(12)]
    try:
        with ThreadPoolExecutor(24) as pool:
            list(pool.map(lambda n: provider.place(n, set(), 1), nodes * 2))
        users = {n: provider.node_user(n) for n in nodes}
        assert len({u.uid for u in users.values()}) == len(nodes)
        for node_id, user in users.items():
            assert pwd.getpwnam(user.name).pw_uid == user.uid
            assert pwd.getpwuid(user.uid).pw_gecos == f"hoard node {node_id}"
    finally:
        for node_id in nodes:
            provider.destroy(node_id)


def test_a_uid_lock_file_not_hoards_own_is_refused(
        provider: LocalProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "hoard-uids"
    planted.write_text("{}")
    os.chown(planted, 65534, 65534)  # another account's file where the lock goes
    monkeypatch.setattr(osusers, "LOCK", planted)
    node = f"iso-{secrets.token_hex(4)}"
    with pytest.raises(RuntimeError, match="is not Hoard's own"):
        provider.place(node, set(), 1)
    with pytest.raises(RuntimeError, match="no OS account on record"):
        provider.node_user(node)  # nothing was made


def _taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        try:
            grp.getgrgid(uid)
        except KeyError:
            return False
    return True


def test_a_restarted_hoard_readopts_the_nodes_process_and_account(
        provider: LocalProvider) -> None:
    node = f"iso-{secrets.token_hex(4)}"
    provider.place(node, set(), 1)
    assert provider.start_process(node, ProcessSpec(["/bin/sleep", "600"]))
    pid, user = provider.pid(node), provider.node_user(node)
    again = LocalProvider(provider.nodes_dir, "hoard-db", volumes="directory")
    assert again.is_running(node) and again.pid(node) == pid
    assert again.node_user(node) == user
    # re-adopted, not started:
    assert not again.start_process(node, ProcessSpec(["/bin/sleep", "600"]))
    again.runner(node).write_file(PurePosixPath("conf/x"), b"x")
    again.stop(node)
    assert pid is not None and proc_state(pid) is None


def test_a_node_of_the_earlier_layout_is_named_as_such_and_destroyed(
        provider: LocalProvider) -> None:
    """The first layout: one shared account, the process record in the node's
    directory. Such a node is not adopted, and destroying it still works."""
    node = f"old-{secrets.token_hex(4)}"
    root = provider.nodes_dir / node
    root.mkdir(mode=0o700)
    shared = pwd.getpwnam("hoard-db")
    os.chown(root, shared.pw_uid, shared.pw_gid)
    old = subprocess.Popen(["setpriv", f"--reuid={shared.pw_uid}", f"--regid={shared.pw_gid}",
                            "--clear-groups", "--", "/bin/sleep", "600"], cwd=root,
                           start_new_session=True)
    (root / "process.json").write_text(f'{{"pid": {old.pid}, "start_time": 0}}')
    with pytest.raises(RuntimeError, match="earlier layout"):
        provider.runner(node)
    with pytest.raises(RuntimeError, match="earlier layout"):
        provider.start_process(node, ProcessSpec(["/bin/sleep", "600"]))
    provider.destroy(node)
    assert old.wait(timeout=10) == -9
    assert not root.exists()


def test_each_endpoint_proxy_runs_as_an_account_of_its_own(provider: LocalProvider) -> None:
    node = f"iso-{secrets.token_hex(4)}"
    provider.place(node, set(), 1)
    node_uid = provider.node_user(node).uid
    ca = provider.nodes_dir.parent / "ca.pem"
    ca.write_text("not used by plain checks\n")
    endpoint = Endpoint(provider.new_address(), 5432, provider.new_address(), 5432)
    provider.ensure_endpoint("c-iso", [], HttpRoleCheck("agent", "/primary", "/replica"),
                             str(ca), endpoint)
    directory = provider.endpoints.root / "c-iso"
    proxy_uid = directory.stat().st_uid
    assert proxy_uid not in (0, node_uid, pwd.getpwnam("hoard-db").pw_uid)
    assert pwd.getpwuid(proxy_uid).pw_gecos == "hoard endpoint c-iso"
    assert directory.stat().st_mode & 0o777 == 0o700
    record = provider.endpoints.records / "c-iso" / "process.json"
    pid = int(json.loads(record.read_text())["pid"])
    assert uid_of(pid) == proxy_uid
    node_dir = provider.nodes_dir / node
    assert as_uid(proxy_uid, "ls", str(node_dir)).returncode != 0
    assert as_uid(node_uid, "ls", str(directory)).returncode != 0
    account = pwd.getpwuid(proxy_uid).pw_name
    provider.remove_endpoint("c-iso")
    with pytest.raises(KeyError):
        pwd.getpwnam(account)


def test_the_uid_range_setting_is_checked() -> None:
    assert Settings().uid_range == (200000, 265535)
    assert Settings(db_uid_range="300000-300099").uid_range == (300000, 300099)
    for bad in ("300000", "a-b", "300099-300000", "0-65535"):
        with pytest.raises(ValidationError):
            Settings(db_uid_range=bad)


def test_two_destroys_of_one_node_at_once_both_succeed(provider: LocalProvider) -> None:
    """A step and the observer's replacement may destroy one node at the same
    moment: each removal of its account succeeds, and the account is gone."""
    for _ in range(5):
        node = f"iso-{secrets.token_hex(4)}"
        provider.place(node, set(), 1)
        name = provider.node_user(node).name
        barrier = threading.Barrier(2)

        def destroy(node: str = node, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            provider.destroy(node)

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(destroy), pool.submit(destroy)]:
                done.result()
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
