"""Redis: the stock Debian package, one TLS-only server process per node.

Accounts are Redis ACL users kept in an ACL file beside the data (so
``ACL SAVE`` persists them), passwords only as SHA-256 hashes. The ``default``
user is disabled. Hoard's own user, ``hoard``, may run everything; the
tenant's admin may run every command except those that reach the host or the
server's configuration (``@admin``: CONFIG, SHUTDOWN, REPLICAOF, ACL changes,
MONITOR, DEBUG, MODULE, SAVE...; ``@dangerous``: also MIGRATE, which connects
out, and RESTORE, which loads raw payloads), given back the harmless
``@dangerous`` ones it needs: FLUSHDB, FLUSHALL, KEYS, INFO, SORT, SWAPDB.
The DEBUG and MODULE commands and the protected configs (``dir``...) are also
switched off in the server, for every user. Tenant users get key patterns and
command categories, never ``@admin`` or ``@dangerous``. As everywhere in Redis,
key patterns limit the keys a user reads and writes, not the names SCAN and
RANDOMKEY show.

Backups are RDB snapshots with the tenant's ACL users beside them (see
``redis.backup``); a restore lays the RDB down where the first start loads it:
as the AOF's base file when ``appendonly`` is on (Redis 7 would otherwise
ignore a lone ``dump.rdb`` and start empty), else as ``dump.rdb``.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hoard.domain.errors import NotFound
from hoard.domain.nodes import NodeRunner, ProcessSpec
from hoard.engines.base import (
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    AclAccounts,
    Backups,
    ClientCommand,
    Credentials,
    Engine,
    Health,
    LogMark,
    Metrics,
    NodeContext,
    Parameter,
    ParamValue,
    UserInfo,
)
from hoard.engines.redis import backup as rb
from hoard.engines.redis.ha import RedisReplication
from hoard.engines.redis.logs import RedisLogs
from hoard.engines.redis.metrics import collect as collect_metrics
from hoard.engines.redis.tls import TLSConnection
from hoard.engines.redis.verify import RedisVerify

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
DATA = PurePosixPath("data")  # everything the server writes: AOF, RDB, ACL file
ACL_FILE = DATA / "users.acl"
RDB_FILE = DATA / "dump.rdb"
AOF_DIR = DATA / "appendonlydir"
AOF_NAME = "appendonly.aof"  # the AOF's files are named after it
AOF_MANIFEST = AOF_DIR / f"{AOF_NAME}.manifest"
AOF_BASE = AOF_DIR / f"{AOF_NAME}.1.base.rdb"
RESTORING = PurePosixPath("restore")  # a restore's scratch space, until finish_restore
CONF = PurePosixPath("conf/redis.conf")  # everything Hoard writes

DEFAULT_RULES = ("off", "resetpass", "resetkeys", "resetchannels", "-@all")
SERVICE_RULES = ("on", "~*", "&*", "+@all")
ADMIN_RULES = ("on", "~*", "&*", "+@all", "-@admin", "-@dangerous",
               "+flushdb", "+flushall", "+keys", "+info", "+sort", "+sort_ro", "+swapdb")
TENANT_DENY = ("-@admin", "-@dangerous")

PARAMETERS = [
    Parameter("maxmemory", "integer", True, "Memory for data; at the limit, maxmemory-policy "
              "applies (at most the size's memory)", 16, 1048576, unit="MB", memory_share=1.0),
    Parameter("maxmemory-policy", "enum", True, "What happens when maxmemory is reached",
              allowed=("noeviction", "allkeys-lru", "allkeys-lfu", "volatile-lru",
                       "volatile-lfu", "allkeys-random", "volatile-random", "volatile-ttl")),
    Parameter("maxclients", "integer", True, "Most concurrent connections", 16, 50000),
    Parameter("timeout", "integer", True, "Close connections idle this long (0 never)",
              0, 31536000, unit="s"),
    Parameter("appendonly", "boolean", True, "Log every write to the append-only file"),
    Parameter("appendfsync", "enum", True, "How often the append-only file is flushed to disk",
              allowed=("always", "everysec", "no")),
    Parameter("slowlog-log-slower-than", "integer", True,
              "Log commands slower than this (-1 disables)", -1, 60000000, unit="us"),
    Parameter("slowlog-max-len", "integer", True, "Entries kept in the slow log", 0, 100000),
    Parameter("databases", "integer", False, "Number of logical databases", 1, 64),
    Parameter("io-threads", "integer", False, "Threads for network I/O", 1, 8),
]
_STATIC = {p.name for p in PARAMETERS if not p.dynamic}
_RESTRICTED = re.compile(r"[!#-&*-~]{1,256}")  # printable ASCII but space, quotes, ( and )
_RULE_PREFIXES = tuple("><#!+-&%~@(")  # would read as another ACL rule
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NO_RETRY = Retry(NoBackoff(), 0)  # callers retry whole steps; fail fast here


def size_settings(memory_mb: int) -> dict[str, str]:
    """Defaults for a node of ``memory_mb``: 25% is left for the copy-on-write
    of background saves and rewrites, so the cgroup limit is not hit."""
    return {
        "maxmemory": f"{max(16, memory_mb * 3 // 4)}mb",
        "maxmemory-policy": "noeviction",
        "maxclients": "1000" if memory_mb < 1024 else "10000",
        "timeout": "0",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "3600 1 300 100 60 10000",
        "slowlog-log-slower-than": "10000",
        "slowlog-max-len": "128",
        "databases": "16",
        "io-threads": "1",
    }


def _render(name: str, value: ParamValue, memory_mb: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "maxmemory":  # a larger value would get the server killed by the cgroup
        return f"{min(int(value), memory_mb)}mb"
    return str(value)


def _conf_value(value: str) -> str:
    if any(ord(c) < 32 for c in value):  # a newline would start another directive
        raise ValueError(f"control character in configuration value {value!r}")
    if value and re.fullmatch(r"[A-Za-z0-9_./:-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hashed(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def _check_pattern(pattern: str) -> str:
    # The ACL file is split on spaces and quotes when loaded, so a pattern that
    # has them, or that starts like a rule, would add rules at the next start.
    if not _RESTRICTED.fullmatch(pattern) or pattern.startswith(_RULE_PREFIXES):
        raise ValueError(f"bad key pattern {pattern!r}")
    return pattern


@cache
def _installed_versions() -> tuple[str, ...]:
    try:
        out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"\bv=(\d+)\.(\d+)", out)
    return (f"{found[1]}.{found[2]}",) if found else ()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Redis(Engine, AclAccounts, Metrics, Backups, RedisVerify, RedisReplication, RedisLogs):
    name = "redis"
    display_name = "Redis"
    standard_port = 6379
    client_binary = "redis-cli"
    reserved_users = frozenset({"default", "hoard", "admin"})
    categories = frozenset({
        "read", "write", "keyspace", "string", "list", "set", "sortedset", "hash", "stream",
        "pubsub", "bitmap", "hyperloglog", "geo", "blocking", "transaction", "connection",
        "fast", "slow", "scripting",
    })
    log_kind = ""
    snapshot_wait = 300.0  # longest wait for a running background save or rewrite, in s
    snapshot_timeout = 3600.0  # longest a snapshot may take, fork to last byte
    restore_wait = 600.0  # longest a restored node may take to load its data

    def installed_versions(self) -> list[str]:
        return list(_installed_versions())

    def parameters(self) -> list[Parameter]:
        return PARAMETERS

    def settings(self, ctx: NodeContext) -> dict[str, str]:
        mem = ctx.size.memory_mb
        values = size_settings(mem)
        values.update({k: _render(k, v, mem) for k, v in ctx.parameters.items()})
        return values

    def is_dynamic(self, setting: str) -> bool:
        return setting not in _STATIC

    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
        if runner.exists(ACL_FILE):
            return
        self._write_acl(ctx, runner, [])

    def _write_acl(self, ctx: NodeContext, runner: NodeRunner, tenant: list[str]) -> None:
        # One atomic write (it also makes the data directory, 0700): either the
        # users are all there or the file is not.
        text = (
            f"user default {' '.join(DEFAULT_RULES)}\n"
            f"user {ctx.service.user} {' '.join(SERVICE_RULES)} {_hashed(ctx.service.password)}\n"
            f"user {ctx.admin.user} {' '.join(ADMIN_RULES)} {_hashed(ctx.admin.password)}\n"
            + "".join(line + "\n" for line in rb.tenant_lines(tenant, self._hidden(ctx)))
        )
        runner.write_file(ACL_FILE, text.encode(), 0o600)

    def _hidden(self, ctx: NodeContext) -> frozenset[str]:
        """Users that are not the tenant's to list or manage."""
        return self.reserved_users | {ctx.admin.user, ctx.service.user}

    def server_settings(self, ctx: NodeContext, runner: NodeRunner) -> dict[str, str]:
        """Every setting ``configure`` writes: fixed ones (TLS only, files beside
        the data) and ``settings(ctx)``. Replicated members add theirs to these."""
        fixed = {
            "daemonize": "no",
            "supervised": "no",
            "bind": ctx.bind,
            "protected-mode": "yes",
            "port": "0",  # no plaintext listener, and no unixsocket either
            "tls-port": str(ctx.port),
            "tls-cert-file": runner.abspath(TLS_CERT),
            "tls-key-file": runner.abspath(TLS_KEY),
            "tls-auth-clients": "no",  # clients prove themselves with ACL passwords
            "tls-protocols": "TLSv1.2 TLSv1.3",
            "tls-prefer-server-ciphers": "yes",
            "dir": runner.abspath(DATA),
            "dbfilename": RDB_FILE.name,  # these three: where restore puts the data
            "appenddirname": AOF_DIR.name,
            "appendfilename": AOF_NAME,
            "repl-diskless-sync-delay": "0",  # a backup's snapshot starts at once
            "aclfile": runner.abspath(ACL_FILE),
            "logfile": "",  # stdout, which the provider keeps
            "loglevel": "notice",
            "always-show-logo": "no",
            "enable-protected-configs": "no",
            "enable-debug-command": "no",
            "enable-module-command": "no",
            "tcp-keepalive": "300",
        }
        return {**fixed, **self.settings(ctx)}

    def configure(self, ctx: NodeContext, runner: NodeRunner) -> None:
        self.write_conf(runner, self.server_settings(ctx, runner))

    def write_conf(self, runner: NodeRunner, values: Mapping[str, str],
                   raw: Iterable[str] = ()) -> None:
        """The server's configuration file: ``values`` quoted, then ``raw`` lines
        (directives with several arguments, such as ``replicaof host port``)."""
        conf = "# Managed by Hoard: changes here are overwritten.\n" + "".join(
            f"{k} {_conf_value(v)}\n" for k, v in values.items()
        ) + "".join(line + "\n" for line in raw)
        runner.write_file(CONF, conf.encode())

    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        return ProcessSpec(
            argv=[REDIS_SERVER, runner.abspath(CONF)],
            env={"TZ": "UTC"},  # the log's times (see logs.py)
            stop_signal=signal.SIGTERM,  # flush the AOF, save the RDB, exit
            stop_timeout=30.0,
        )

    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10) -> redis.Redis:
        return redis.Redis.from_pool(redis.ConnectionPool(
            connection_class=TLSConnection,
            host=ctx.host, port=ctx.port, username=ctx.service.user,
            password=ctx.service.password, ssl_ca_certs=ca_file,
            ssl_cert_reqs="required", ssl_check_hostname=True,
            socket_connect_timeout=timeout, socket_timeout=timeout, retry=_NO_RETRY,
            decode_responses=True, client_name="hoard",
        ))

    def health(self, ctx: NodeContext, ca_file: str, timeout: float = 3.0) -> Health:
        try:
            with self._connect(ctx, ca_file, timeout) as client:
                client.ping()
                role: Any = client.execute_command("ROLE")
        except (redis.RedisError, OSError, ValueError) as exc:
            return Health(False, _first_line(exc))
        kind = "primary" if role and role[0] == "master" else "replica"
        return Health(True, f"accepting connections as {kind}")

    def metrics(self, ctx: NodeContext, ca_file: str, timeout: float = 2.0) -> dict[str, float]:
        with self._connect(ctx, ca_file, timeout) as client:
            return collect_metrics(client, ctx.service.user)

    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        # bootstrap wrote these users; setting them again makes the end state
        # right whatever the file held (an older password, say).
        # One connection for all of it (each is a TLS handshake).
        with self._connect(ctx, ca_file) as client:
            client.execute_command("ACL", "SETUSER", "default", "reset", *DEFAULT_RULES)
            self._set_admin(ctx, ca_file, client)  # saves the ACL file too

    def set_admin_password(self, ctx: NodeContext, ca_file: str) -> None:
        with self._connect(ctx, ca_file) as client:
            self._set_admin(ctx, ca_file, client)

    def _set_admin(self, ctx: NodeContext, ca_file: str, client: redis.Redis) -> None:
        client.execute_command("ACL", "SETUSER", ctx.admin.user, "reset", *ADMIN_RULES,
                               _hashed(ctx.admin.password))
        client.execute_command("ACL", "SAVE")
        self.replicate_acl(ctx, ca_file, ctx.admin.user, client)  # Redis does not copy users

    def apply_live(self, ctx: NodeContext, ca_file: str, names: list[str]) -> None:
        # CONFIG SET only: the file is Hoard's (configure wrote it), no CONFIG REWRITE.
        values = self.settings(ctx)
        args = [x for n in names if n in values and self.is_dynamic(n) for x in (n, values[n])]
        if args:
            with self._connect(ctx, ca_file) as client:
                client.execute_command("CONFIG", "SET", *args)  # all or nothing

    def connection_uri(self, host: str, port: int, creds: Credentials,
                       ca_file: str | None = None) -> str:
        """``rediss://``: TLS, and redis-py verifies certificate and name by default;
        ``ssl_ca_certs`` (redis-py's name) with a CA file."""
        uri = creds.uri("rediss", host, port, "0")
        return uri + (f"?ssl_ca_certs={quote(ca_file)}" if ca_file else "")

    def client_command(
        self, host: str, port: int, creds: Credentials, ca_file: str
    ) -> ClientCommand:
        return ClientCommand(
            argv=["redis-cli", "-h", host, "-p", str(port), "--user", creds.user,
                  "--tls", "--cacert", ca_file],
            env={"REDISCLI_AUTH": creds.password},
        )

    # --- AclAccounts ------------------------------------------------------------

    def _tenant_user(self, ctx: NodeContext, name: str) -> str:
        if (not _USER_NAME.fullmatch(name) or name in self.reserved_users
                or name in (ctx.admin.user, ctx.service.user)):
            raise ValueError(f"user name {name!r} is reserved or not allowed")
        return name

    def _category_members(self, client: redis.Redis) -> dict[str, set[str]]:
        pipe = client.pipeline(transaction=False)
        names = sorted(self.categories | {"admin", "dangerous"})
        for cat in names:
            pipe.execute_command("ACL", "CAT", cat)
        return {cat: set(cmds) for cat, cmds in zip(names, pipe.execute(), strict=True)}

    def list_users(self, ctx: NodeContext, ca_file: str) -> list[UserInfo]:
        """Tenant users, their key patterns, and each tenant category they hold
        in full. Redis 7.0 keeps only the resulting command set, not the rules
        given, so a user made with read and write also shows string, hash..."""
        hidden = self._hidden(ctx)
        with self._connect(ctx, ca_file) as client:
            members = self._category_members(client)
            pipe = client.pipeline(transaction=False)
            names = sorted(set(client.execute_command("ACL", "USERS")) - hidden)
            for name in names:
                pipe.execute_command("ACL", "GETUSER", name)
            replies = pipe.execute()
        denied = members["admin"] | members["dangerous"]
        everything = set().union(*members.values())
        users = []
        for name, reply in zip(names, replies, strict=True):
            info = dict(zip(reply[::2], reply[1::2], strict=True))
            allowed = _allowed_commands(str(info["commands"]), members, everything)
            # Without @scripting, create_user also took FUNCTION LOAD... out of @write.
            off = denied if members["scripting"] - denied <= allowed else (
                denied | members["scripting"])
            cats = [c for c in sorted(self.categories)
                    if members[c] - off and members[c] - off <= allowed]
            keys = [k.split("~", 1)[1] for k in str(info["keys"]).split() if "~" in k]
            users.append(UserInfo(name=name, keys=keys, categories=cats))
        return users

    def create_user(self, ctx: NodeContext, ca_file: str, name: str, password: str,
                    keys: list[str], categories: list[str]) -> None:
        self._tenant_user(ctx, name)
        for cat in categories:
            if cat not in self.categories:
                raise ValueError(f"unknown or forbidden command category {cat!r}")
        patterns = [_check_pattern(p) for p in keys]
        # Channels follow the key patterns: the user's one namespace. FUNCTION
        # LOAD/FLUSH/DELETE are in @write too but touch every user's functions,
        # so they come only with @scripting.
        deny = TENANT_DENY if "scripting" in categories else (*TENANT_DENY, "-@scripting")
        rules = ["reset", "on", _hashed(password), *(f"~{p}" for p in patterns),
                 *(f"&{p}" for p in patterns), *(f"+@{c}" for c in categories), *deny]
        with self._connect(ctx, ca_file) as client:
            client.execute_command("ACL", "SETUSER", name, *rules)
            client.execute_command("ACL", "SAVE")
        self.replicate_acl(ctx, ca_file, name)

    def drop_user(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        self._tenant_user(ctx, name)
        with self._connect(ctx, ca_file) as client:
            client.execute_command("ACL", "DELUSER", name)  # also ends its connections
            client.execute_command("ACL", "SAVE")
        self.replicate_acl(ctx, ca_file, name)

    def set_password(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        self._tenant_user(ctx, name)
        rule = _hashed(password)
        with self._connect(ctx, ca_file) as client:
            if client.execute_command("ACL", "GETUSER", name) is None:
                raise NotFound(f"no user {name!r}")  # SETUSER would create one
            client.execute_command("ACL", "SETUSER", name, "resetpass", rule)
            client.execute_command("ACL", "SAVE")
        self.replicate_acl(ctx, ca_file, name)

    # --- Backups ----------------------------------------------------------------

    def backup(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
               meta: dict[str, str]) -> Iterator[bytes]:
        """The tenant's ACL users, then an RDB snapshot (see ``redis.backup``).
        The snapshot waits at most ``snapshot_wait`` for a background save or
        AOF rewrite to end (the server forks one child at a time), and takes at
        most ``snapshot_timeout`` in all. meta: format, redis_version, keys and
        expires (INFO keyspace just before the snapshot), end_time (when it was
        taken, UTC)."""
        with self._connect(ctx, ca_file) as client:
            rb.wait_persistence(client, rb.idle, self.snapshot_wait,
                                "no snapshot: a background save or AOF rewrite was still running")
            users = rb.tenant_lines(client.execute_command("ACL", "LIST"), self._hidden(ctx))
            version = str(client.info("server")["redis_version"])
            keyspace: Any = client.info("keyspace")
        dbs = [v for k, v in keyspace.items() if k.startswith("db") and isinstance(v, dict)]
        meta.update(format=rb.FORMAT, redis_version=version,
                    keys=str(sum(int(db["keys"]) for db in dbs)),
                    expires=str(sum(int(db["expires"]) for db in dbs)))
        # redis-cli runs beside the server (in its pod, on Kubernetes): it reads
        # Hoard's CA from the node's volume, not from Hoard's own path.
        runner.write_file(TLS_CA, Path(ca_file).read_bytes(), 0o644)
        argv = ["timeout", "--kill-after=5", f"{self.snapshot_timeout:g}", REDIS_CLI,
                "--tls", "--cacert", runner.abspath(TLS_CA), "-h", ctx.host, "-p", str(ctx.port),
                "--user", ctx.service.user, "--rdb", "-"]  # SYNC: the server forks
        yield rb.header(users)
        snapshot = runner.stream(argv, env={"REDISCLI_AUTH": ctx.service.password})
        yield from rb.rdb_only(rb.timed(snapshot, self.snapshot_timeout, meta))

    def rotate_log(self, ctx: NodeContext, ca_file: str) -> LogMark | None:
        return None  # no log: the AOF is the server's own, rewritten rather than closed

    def last_commit(self, ctx: NodeContext, runner: NodeRunner,
                    path: PurePosixPath) -> datetime | None:
        return None

    def closed_logs(self, runner: NodeRunner) -> list[PurePosixPath]:
        return []

    def restore(self, ctx: NodeContext, runner: NodeRunner, backup: Iterable[bytes],
                meta: Mapping[str, str], logs: list[tuple[str, Iterable[bytes]]],
                target: str | None) -> None:
        """Check the RDB whole (redis-check-rdb) before it goes where the first
        start loads it; the ACL file, written last, marks a finished restore
        (kept if run again, like a finished bootstrap): the admin's and Hoard's
        users from ``ctx``, the tenant's users from the backup."""
        if target is not None:
            raise ValueError("Redis restores only whole backups: no point-in-time log")
        if logs:
            raise ValueError("Redis has no log to replay")
        if meta.get("format") != rb.FORMAT:
            raise ValueError(f"not a Redis backup Hoard can restore ({meta.get('format')!r})")
        if runner.exists(ACL_FILE):
            return
        runner.remove_tree(DATA)  # a half-finished restore or bootstrap
        runner.remove_tree(RESTORING)
        lines, rdb = rb.split(backup)
        users = rb.tenant_lines(lines, self._hidden(ctx))
        staged = RESTORING / "backup.rdb"
        runner.write_stream(staged, rb.rdb_only(rdb))
        keys = rb.check_rdb(runner, staged)
        runner.write_file(RESTORING / "keys", str(keys).encode())  # for finish_restore
        if self.settings(ctx)["appendonly"] == "yes":
            runner.write_file(AOF_MANIFEST, f"file {AOF_BASE.name} seq 1 type b\n".encode())
            runner.rename(staged, AOF_BASE)
        else:
            runner.write_file(RDB_FILE, b"")  # the data directory
            runner.rename(staged, RDB_FILE)
        self._write_acl(ctx, runner, users)

    def _loaded_rdb(self, runner: NodeRunner) -> PurePosixPath | None:
        if runner.exists(RDB_FILE):
            return RDB_FILE
        # An AOF keeps one base at a time (the server removes a rewritten one's).
        bases = [n for n in runner.list_dir(AOF_DIR) if n.endswith(".base.rdb")]
        return AOF_DIR / bases[-1] if bases else None

    def finish_restore(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                       target: str | None) -> None:
        """Wait (at most ``restore_wait``) until the data is loaded and no AOF
        rewrite is pending, and check the server loaded every key of the backup."""
        if target is not None:
            raise ValueError("Redis restores only whole backups: no point-in-time log")
        with self._connect(ctx, ca_file) as client:
            info = rb.wait_persistence(
                client, lambda i: not (i["loading"] or i.get("async_loading")
                                       or i["aof_rewrite_in_progress"]
                                       or i["aof_rewrite_scheduled"]),
                self.restore_wait, "the restored node was still loading its data")
        expected_file = RESTORING / "keys"
        if runner.exists(expected_file) and "rdb_last_load_keys_loaded" in info:
            expected = int(b"".join(runner.read_stream(expected_file)))
            loaded = int(info["rdb_last_load_keys_loaded"]) + int(
                info["rdb_last_load_keys_expired"])  # dropped at load: expired since
            if loaded != expected:
                raise RuntimeError(f"the restored node loaded {loaded} keys at its start, "
                                   f"the backup holds {expected}")
        runner.remove_tree(RESTORING)


def _allowed_commands(rules: str, members: dict[str, set[str]], everything: set[str]) -> set[str]:
    """Replay a user's command rules as ACL GETUSER describes them (``-@all
    +@string +get -sort +memory|usage``) over the known command names."""
    allowed: set[str] = set()
    for rule in rules.split():
        sign, target = rule[0], rule[1:]
        if target == "@all":
            names = everything
        elif target.startswith("@"):
            names = members.get(target[1:], set())
        else:
            names = {n for n in everything if n == target or n.startswith(target + "|")}
        allowed = allowed | names if sign == "+" else allowed - names
    return allowed
