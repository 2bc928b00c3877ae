"""Redis Sentinel: the pieces ``redis.ha`` is made of. Asking servers and
sentinels questions over TLS with short timeouts (a member that does not
answer costs one timeout, never a hang), reading their answers, and the
sentinel's configuration file, which Hoard and Sentinel both write.

Sentinel rewrites its file whenever its state changes: its id, the epochs,
the replicas and sentinels it has found, and the primary it monitors. Hoard
writes the rest (ports, TLS, accounts, timings) and carries Sentinel's state
lines over, less those naming former members.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import TLS_CA, TLS_CERT, TLS_KEY, Credentials, Member, Topology
from hoard.engines.redis.tls import TLSConnection

REDIS_SERVER = "/usr/bin/redis-server"  # "--sentinel" makes it a sentinel
CONF = PurePosixPath("conf/redis.conf")  # as the single-node engine's ``configure`` writes it
SENTINEL_CONF = PurePosixPath("conf/sentinel.conf")

DOWN_AFTER_MS = 1500  # unanswered pings before a sentinel calls an instance down
# Per failover step; a failed attempt is retried after 2x. Long enough that a
# promotion slowed by a busy host is not aborted and retried in a loop.
FAILOVER_TIMEOUT_MS = 6000
PARALLEL_SYNCS = 1  # replicas re-pointed at a new primary at a time
ASK_TIMEOUT = 1.0  # seconds for any one question to a server or a sentinel
DEFAULT_RULES = "off resetpass resetkeys resetchannels -@all"
SERVICE_RULES = "on ~* &* +@all"
FAILING_OVER = "failover_in_progress"  # SENTINEL MASTER flag of a sentinel leading a failover
DOWN_FLAGS = ("s_down", "o_down", FAILING_OVER, "disconnected")
_NO_RETRY = Retry(NoBackoff(), 0)
ERRORS = (redis.RedisError, OSError, ValueError)

Addr = tuple[str, int]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Trust:
    """Hoard's CA, as a file (control plane) or as PEM read off the node's volume."""

    file: str | None = None
    pem: str | None = None


@dataclass(frozen=True)
class View:
    """One sentinel's view of the cluster's primary (SENTINEL MASTER)."""

    addr: Addr
    epoch: int
    flags: frozenset[str]
    other_sentinels: int
    replicas: int


def client(addr: Addr, creds: Credentials, trust: Trust,
           timeout: float = ASK_TIMEOUT) -> redis.Redis:
    return redis.Redis.from_pool(redis.ConnectionPool(
        connection_class=TLSConnection,
        host=addr[0], port=addr[1], username=creds.user, password=creds.password,
        ssl_ca_certs=trust.file, ssl_ca_data=trust.pem, ssl_cert_reqs="required",
        ssl_check_hostname=True, socket_connect_timeout=timeout, socket_timeout=timeout,
        retry=_NO_RETRY, decode_responses=True, client_name="hoard",
    ))


def ask(addr: Addr, creds: Credentials, trust: Trust, *args: str) -> Any:
    """One command; None when the instance does not answer or refuses."""
    try:
        with client(addr, creds, trust) as conn:
            return conn.execute_command(*args)
    except ERRORS:
        return None


def each(func: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``func`` over ``items`` at once: a dead member costs one timeout, not one each."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(func, items))


def wait_until(predicate: Callable[[], T | None], timeout: float, failure: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{failure} after {timeout:g} s")
        time.sleep(0.1)


def pairs(reply: Any) -> dict[str, str]:
    """A flat [key, value, ...] reply (SENTINEL MASTER, REPLICAS entries) as a dict."""
    return dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else {}


def info_int(info: Any, key: str) -> int:
    """An integer field of a parsed INFO (or pairs) reply; -1 when there is none."""
    try:
        return int(info[key])
    except (TypeError, KeyError, ValueError):
        return -1


def server(m: Member) -> Addr:
    return (m.host, m.port)


def sentinel(m: Member) -> Addr:
    return (m.host, m.ports["sentinel"])


def master_name(topo: Topology) -> str:
    """What the sentinels call the cluster."""
    return "hoard-" + re.sub(r"[^A-Za-z0-9_.-]", "-", topo.cluster_id)


def quorum(members: int) -> int:
    """Sentinels that must agree the primary is down: a majority of the members."""
    return members // 2 + 1


def view_at(addr: Addr, name: str, creds: Credentials, trust: Trust) -> View | None:
    """One sentinel's view (None: no answer). Its ``addr`` is the primary the
    sentinel keeps: during a failover it already *reports* the promoted replica
    (GET-MASTER-ADDR-BY-NAME) but keeps the old one until the failover ends."""
    found = pairs(ask(addr, creds, trust, "SENTINEL", "MASTER", name))
    if not found:
        return None
    return View((found["ip"], int(found["port"])), int(found["config-epoch"]),
                frozenset(found["flags"].split(",")), int(found["num-other-sentinels"]),
                int(found["num-slaves"]))


def views(topo: Topology, creds: Credentials, trust: Trust) -> list[View | None]:
    """Every member's sentinel's view, in member order (None: no answer)."""
    name = master_name(topo)
    return each(lambda m: view_at(sentinel(m), name, creds, trust), topo.members)


def settled(found: Iterable[View | None], primary: Addr) -> bool:
    """Every answering sentinel keeps ``primary`` and runs no failover. Until
    then a SENTINEL RESET is unsafe: it drops a failover under way and leaves
    that sentinel on the old primary, for good."""
    return all(v.addr == primary and FAILING_OVER not in v.flags
               for v in found if v is not None)


def infos(topo: Topology, creds: Credentials, trust: Trust) -> list[dict[str, Any] | None]:
    """Every member's server's INFO replication, in member order (None: no answer)."""
    def info(m: Member) -> dict[str, Any] | None:
        found = ask(server(m), creds, trust, "INFO", "replication")
        return dict(found) if isinstance(found, dict) else None
    return each(info, topo.members)


def agreed(found: Iterable[View | None]) -> View | None:
    """The sentinels' answer: the highest configuration epoch (as among sentinels),
    then the most of them."""
    answers = [v for v in found if v is not None]
    if not answers:
        return None
    top = max(v.epoch for v in answers)
    addr, _ = Counter(v.addr for v in answers if v.epoch == top).most_common(1)[0]
    return next(v for v in answers if v.addr == addr and v.epoch == top)


def read_text(runner: NodeRunner, path: PurePosixPath) -> str | None:
    if not runner.exists(path):
        return None
    return b"".join(runner.read_stream(path)).decode()


def conf_replicaof(runner: NodeRunner) -> Addr | None:
    """The primary the server's file says to follow (Sentinel's CONFIG REWRITE keeps
    it current); None for a primary."""
    text = read_text(runner, CONF) or ""
    found = re.search(r"^(?:replicaof|slaveof) (\S+) (\d+)\s*$", text, re.M)
    return (found[1], int(found[2])) if found else None


def saved_state(text: str, topo: Topology, me: Member) -> tuple[Addr | None, list[str]]:
    """From a sentinel's saved file: the primary it last monitored, and its state
    lines (identity, epochs, peers found), less peers that are no longer members."""
    name = master_name(topo)
    servers = {server(m) for m in topo.members}
    sentinels = {sentinel(m) for m in topo.members if m.node_id != me.node_id}
    monitor = re.search(rf"^sentinel monitor {re.escape(name)} (\S+) (\d+) \d+\s*$", text, re.M)
    primary = (monitor[1], int(monitor[2])) if monitor else None
    kept = []
    for line in text.splitlines():
        words = line.split()
        if words[:2] in (["sentinel", "myid"], ["sentinel", "current-epoch"]) or (
                words[1:2] in (["config-epoch"], ["leader-epoch"]) and words[2:3] == [name]):
            kept.append(line)
        elif words[1:3] == ["known-replica", name] and len(words) == 5:
            if (words[3], int(words[4])) in servers:
                kept.append(line)
        elif (words[1:3] == ["known-sentinel", name] and len(words) == 6
              and (words[3], int(words[4])) in sentinels):
            kept.append(line)
    return primary, kept


def settings(topo: Topology) -> list[str]:
    """The per-cluster options, as SENTINEL SET takes them."""
    return ["quorum", str(quorum(len(topo.members))),
            "down-after-milliseconds", str(DOWN_AFTER_MS),
            "failover-timeout", str(FAILOVER_TIMEOUT_MS),
            "parallel-syncs", str(PARALLEL_SYNCS)]


def _quote(value: str) -> str:
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"control character in configuration value {value!r}")
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def named(topo: Topology) -> bool:
    """Whether members' addresses are names (a Kubernetes Service's) rather than
    IP addresses: Sentinel then resolves them, and announces names, not the IPs
    they resolve to now (a pod made again has another)."""
    return any(not _is_ip(m.host) for m in topo.members)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def sentinel_conf(topo: Topology, me: Member, service: Credentials, runner: NodeRunner,
                  primary: Addr | None, saved: str, bind: str = "") -> str:
    """Hoard's lines, then Sentinel's state from the ``saved`` file. It monitors
    ``primary``, else the saved one, else the first member. It listens on
    ``bind`` (the member's own address when empty) and announces the member's
    address to its peers. The sentinel checks the servers' and other sentinels'
    certificates against Hoard's CA (``tls-replication`` is what turns TLS on
    for a sentinel's own links)."""
    name = master_name(topo)
    last, state = saved_state(saved, topo, me)
    host, port = primary or last or server(topo.members[0])
    # The primary cannot also be a known replica (Sentinel would refuse the file).
    state = [s for s in state if s.split()[1:] != ["known-replica", name, host, str(port)]]
    user, password = service.user, service.password
    digest = "#" + hashlib.sha256(password.encode()).hexdigest()
    lines = [
        "# Managed by Hoard and by Sentinel: Sentinel rewrites this file, Hoard",
        "# rewrites its own lines and keeps Sentinel's state.",
        "port 0",
        f"tls-port {me.ports['sentinel']}",
        f"bind {bind or me.host}",
        f"tls-cert-file {_quote(runner.abspath(TLS_CERT))}",
        f"tls-key-file {_quote(runner.abspath(TLS_KEY))}",
        f"tls-ca-cert-file {_quote(runner.abspath(TLS_CA))}",
        "tls-auth-clients no",  # clients prove themselves with the ACL password
        "tls-replication yes",
        'tls-protocols "TLSv1.2 TLSv1.3"',
        f"dir {_quote(runner.abspath(SENTINEL_CONF.parent))}",
        'logfile ""',
        "daemonize no",
        f"user default {DEFAULT_RULES}",
        f"user {user} {SERVICE_RULES} {digest}",
        f"sentinel sentinel-user {user}",
        f"sentinel sentinel-pass {_quote(password)}",
        f"sentinel announce-ip {me.host}",
        f"sentinel announce-port {me.ports['sentinel']}",
        *(["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]
          if named(topo) else ["sentinel resolve-hostnames no"]),
        f"sentinel monitor {name} {host} {port} {quorum(len(topo.members))}",
        f"sentinel auth-user {name} {user}",
        f"sentinel auth-pass {name} {_quote(password)}",
        f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {name} {PARALLEL_SYNCS}",
        *state,
    ]
    return "\n".join(lines) + "\n"
