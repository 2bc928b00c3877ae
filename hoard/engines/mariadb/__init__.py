"""MariaDB: stock Debian packages, one ``mariadbd`` per node.

Accounts:

- Hoard's own account (``hoard``) holds every privilege, for management and
  health checks. It is made during bootstrap, where ``root`` and any other
  initial account are dropped, so no password-less or socket account exists.
- The tenant's admin gets every *database-level* privilege on the pattern
  ``%`` (all databases, present and future), so it can create databases and
  manage their data, and no global privilege at all: not FILE (host files),
  SUPER, SHUTDOWN, PROCESS, RELOAD, CREATE USER or GRANT OPTION. Data
  privileges on ``*.*`` would let it rewrite ``mysql.global_priv`` or
  ``mysql.plugin`` and become a superuser at the next restart, so the system
  schemas get an explicit, harmless grant (SHOW VIEW) that MariaDB matches
  before the ``%`` pattern (the most specific database entry wins).
- Tenant users are made through Hoard's API with full access to the databases
  they are granted.

Every connection must use TLS (``require_secure_transport``), and the server
opens no Unix socket.
"""

from __future__ import annotations

import functools
import hashlib
import re
import signal
import subprocess
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import pymysql

from hoard.domain.catalog import Size
from hoard.domain.nodes import NodeRunner, ProcessSpec, Readiness
from hoard.engines.base import (
    TLS_CERT,
    TLS_KEY,
    ClientCommand,
    Credentials,
    DatabaseInfo,
    Engine,
    Health,
    IncrementalBackups,
    Metrics,
    NodeContext,
    Parameter,
    ParamValue,
    SqlAccounts,
    UserInfo,
)
from hoard.engines.mariadb.backup import (
    BINLOG_DIR,
    DATA,
    RESTORED,
    TMP,
    MariaDBBackups,
    binlog_settings,
)
from hoard.engines.mariadb.ha import MariaDBReplication
from hoard.engines.mariadb.logs import MariaDBLogs
from hoard.engines.mariadb.metrics import collect as collect_metrics
from hoard.engines.mariadb.verify import MariaDBVerify

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
MARIADB_ADMIN = "/usr/bin/mariadb-admin"
DATA_INIT = PurePosixPath("data.init")
DONE = DATA / "mysql_upgrade_info"  # written by mariadb-install-db when it succeeded
CONF = PurePosixPath("conf/my.cnf")
BOOTSTRAP_SQL = PurePosixPath("bootstrap/accounts.sql")
APP_DATABASE = "app"
SYSTEM_SCHEMAS = ("mysql", "sys", "performance_schema")
# Management sessions: a known SQL mode whatever the tenant configured. With
# NO_AUTO_CREATE_USER, GRANT never creates a password-less user by accident.
SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
DEFAULT_SQL_MODE = ("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,"
                    "NO_ENGINE_SUBSTITUTION")

# Bounds by size (checked at the API, see Parameter): the buffer pool at most 75%
# of memory (MariaDB's guidance for a dedicated server is up to 80%; the rest is
# connections, the Aria and key caches); an in-memory temporary table and a
# packet buffer, which every session may hold, 25% each.
PARAMETERS = [
    Parameter("max_connections", "integer", True, "Most concurrent connections", 10, 5000),
    Parameter("innodb_buffer_pool_size", "integer", True,
              "InnoDB page cache (resized online)", 32, 1048576, unit="MB", memory_share=0.75),
    Parameter("max_allowed_packet", "integer", True, "Largest packet or row", 1, 1024,
              unit="MB", memory_share=0.25),
    Parameter("tmp_table_size", "integer", True,
              "In-memory temporary tables (also sets max_heap_table_size)", 1, 4096, unit="MB",
              memory_share=0.25),
    Parameter("wait_timeout", "integer", True, "Close idle connections after this long",
              60, 31536000, unit="s"),
    Parameter("long_query_time", "integer", True, "Slow log threshold", 0, 3600, unit="s"),
    Parameter("slow_query_log", "boolean", True, "Log slow queries (to data/slow.log)"),
    Parameter("innodb_flush_log_at_trx_commit", "enum", True,
              "1: flush the redo log at each commit; 2: write at commit, flush each second; "
              "0: write and flush each second", allowed=("1", "2", "0")),
    Parameter("tx_isolation", "enum", True, "Isolation of new transactions",
              allowed=("REPEATABLE-READ", "READ-COMMITTED", "SERIALIZABLE",
                       "READ-UNCOMMITTED")),
    Parameter("sql_mode", "enum", True, "SQL mode of new sessions",
              allowed=(DEFAULT_SQL_MODE, "TRADITIONAL", "ANSI,STRICT_TRANS_TABLES",
                       "NO_ENGINE_SUBSTITUTION")),
    Parameter("performance_schema", "boolean", False,
              "Performance Schema (about 100 MB, taken from the buffer pool; off below 1 GB)"),
    Parameter("thread_handling", "enum", False, "A thread per connection, or a thread pool",
              allowed=("one-thread-per-connection", "pool-of-threads")),
]
_PARAMS = {p.name: p for p in PARAMETERS}
_SUFFIX = {"MB": "M"}
# Settings (tenant or derived) a running 10.11 server can change with SET GLOBAL.
_DYNAMIC = frozenset({p.name for p in PARAMETERS if p.dynamic} | {
    "max_heap_table_size", "key_buffer_size", "table_open_cache", "innodb_log_file_size"})
_SIZED = re.compile(r"(\d+)([KMG]?)")


def memory_settings(size: Size, performance_schema: bool | None = None,
                    storage_gb: int = 0) -> dict[str, str]:
    """Settings derived from the node's size. The Performance Schema (on from
    1 GB) takes about 100 MB whatever the size, so the buffer pool gives that
    up while it is on; below 1 GB everything stays small to fit 256 MB. The
    redo log stays within a quarter of the storage (when known)."""
    mem = size.memory_mb
    redo = min(2048, max(32, mem // 4))
    if storage_gb:
        redo = min(redo, storage_gb * 1024 // 4)
    tiny = mem < 1024
    pfs = not tiny if performance_schema is None else performance_schema
    pool = max(64, (mem - (100 if pfs else 0)) * (50 if mem < 4096 else 60) // 100)
    heap = min(256, max(16, mem // 32))
    return {
        "innodb_buffer_pool_size": f"{pool}M",
        "innodb_log_file_size": f"{redo}M",
        "innodb_log_buffer_size": f"{min(64, max(8, mem // 64))}M",
        "max_connections": "50" if tiny else "150" if mem < 8192 else "400",
        "tmp_table_size": f"{heap}M",
        "max_heap_table_size": f"{heap}M",
        "key_buffer_size": f"{min(128, max(8, mem // 64))}M",
        "aria_pagecache_buffer_size": f"{min(128, max(16, mem // 16))}M",
        "table_open_cache": "400" if tiny else "2000",
        "performance_schema": "ON" if pfs else "OFF",
    }


def _render(name: str, value: ParamValue) -> str:
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    unit = _PARAMS[name].unit if name in _PARAMS else ""
    return f"{value}{_SUFFIX.get(unit, '')}"


def _cnf(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.,:/+-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ident(name: str) -> str:
    """A backtick-quoted identifier. Statements always go through PyMySQL's
    parameter formatting (``_run``), so ``%`` is doubled here too."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def _escape_wild(name: str) -> str:
    """A database name as a grant pattern, where ``_`` and ``%`` are wildcards."""
    return name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def _db_pattern(name: str) -> str:
    return _ident(_escape_wild(name))


def _unpattern(pattern: str) -> str:
    return re.sub(r"\\(.)", r"\1", pattern)


def _native_hash(password: str) -> str:
    """The mysql_native_password hash (``*`` and the hex of SHA1(SHA1(password))).
    Every account statement Hoard sends carries this, never the password: MariaDB
    writes account statements as given to its binary log (and Galera's write
    sets, the slow and general logs), and the bootstrap file holds no password."""
    stage1 = hashlib.sha1(password.encode()).digest()  # noqa: S324 - the protocol's own hash
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


def _sql_string(value: str) -> str:
    """A string literal for the bootstrap file (no connection to escape with)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _run(conn: pymysql.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Execute with PyMySQL's escaping of ``args``; identifiers come from ``_ident``."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


@functools.cache
def _installed_version() -> str | None:
    try:
        out = subprocess.run([MARIADBD, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"Ver (\d+)\.(\d+)\.", out)
    return f"{found[1]}.{found[2]}" if found else None


class MariaDB(Engine, SqlAccounts, Metrics, MariaDBBackups, IncrementalBackups, MariaDBVerify,
              MariaDBReplication, MariaDBLogs):
    name = "mariadb"
    display_name = "MariaDB"
    standard_port = 3306
    client_binary = "mariadb"
    reserved_databases = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
    default_database = APP_DATABASE
    reserved_users = frozenset({"root", "hoard", "admin", "mariadb.sys", "mysql", "PUBLIC"})

    def installed_versions(self) -> list[str]:
        version = _installed_version()
        return [version] if version else []

    def parameters(self) -> list[Parameter]:
        return PARAMETERS

    def settings(self, ctx: NodeContext) -> dict[str, str]:
        pfs = ctx.parameters.get("performance_schema")
        values = memory_settings(ctx.size, None if pfs is None else bool(pfs), ctx.storage_gb)
        for name, value in ctx.parameters.items():
            values[name] = _render(name, value)
            if name == "tmp_table_size":  # the in-memory limit is the smaller of the two
                values["max_heap_table_size"] = values[name]
        return values

    def is_dynamic(self, setting: str) -> bool:
        return setting in _DYNAMIC

    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """``mariadb-install-db`` writes the system tables into a scratch directory
        that is renamed when complete, and runs the account SQL (``--extra-file``)
        in that same bootstrap: either everything exists, published by the
        rename, or nothing does and the next attempt starts over. An init file
        read at the first real start would instead run again at every start, or
        need a record of whether it already ran, and keep a secret on disk."""
        if runner.exists(DONE) or runner.exists(RESTORED):
            runner.remove_tree(BOOTSTRAP_SQL.parent)
            return
        runner.remove_tree(DATA_INIT)
        user = f"{_sql_string(ctx.service.user)}@'%'"
        accounts = "\n".join([
            "FLUSH PRIVILEGES;",  # loads the grant tables, so account statements work
            # Every root, anonymous or other initial account goes (on one line: the
            # bootstrap reader ends a statement at a line ending in ";").
            "FOR a IN (SELECT User, Host FROM mysql.global_priv WHERE User <> 'mariadb.sys') "
            "DO EXECUTE IMMEDIATE CONCAT('DROP USER ', QUOTE(a.User), '@', QUOTE(a.Host)); "
            "END FOR;",
            f"CREATE USER {user} IDENTIFIED BY PASSWORD "
            f"'{_native_hash(ctx.service.password)}' REQUIRE SSL;",
            f"GRANT ALL PRIVILEGES ON *.* TO {user} WITH GRANT OPTION;",
            "",
        ])
        runner.write_file(BOOTSTRAP_SQL, accounts.encode())
        try:
            runner.run([
                INSTALL_DB, "--no-defaults",
                f"--datadir={runner.abspath(DATA_INIT)}",
                "--auth-root-authentication-method=normal",  # dropped by the extra file
                "--skip-test-db", "--skip-name-resolve",
                f"--extra-file={runner.abspath(BOOTSTRAP_SQL)}",
                f"--innodb-log-file-size={self.settings(ctx)['innodb_log_file_size']}",
            ])
        finally:
            runner.remove_tree(BOOTSTRAP_SQL.parent)
        runner.rename(DATA_INIT, DATA)

    def configure(self, ctx: NodeContext, runner: NodeRunner) -> None:
        runner.write_file(TMP / ".keep", b"")  # makes the directory
        runner.write_file(BINLOG_DIR / ".keep", b"")
        fixed = {
            "datadir": runner.abspath(DATA),
            "pid-file": runner.abspath(DATA / "mariadbd.pid"),
            "tmpdir": runner.abspath(TMP),
            "socket": "",  # no Unix socket: every client comes over TCP and TLS
            "bind-address": ctx.bind,
            "port": str(ctx.port),
            "skip-name-resolve": "ON",
            "host_cache_size": "0",  # failed logins never block an address (Hoard's own)
            "symbolic-links": "OFF",
            "require_secure_transport": "ON",
            "ssl_cert": runner.abspath(TLS_CERT),
            "ssl_key": runner.abspath(TLS_KEY),
            "tls_version": "TLSv1.2,TLSv1.3",
            "character-set-server": "utf8mb4",
            "collation-server": "utf8mb4_unicode_ci",
            "slow_query_log_file": runner.abspath(DATA / "slow.log"),
            "default_time_zone": "+00:00",
            **binlog_settings(ctx.node_id, runner),  # archived by Hoard (Backups)
        }  # no log_error: errors go to stderr, which the provider keeps
        values = {**fixed, **self.settings(ctx)}
        conf = "# Managed by Hoard: changes here are overwritten.\n[mariadbd]\n" + "".join(
            f"{k} = {_cnf(v)}\n" for k, v in values.items()
        )
        runner.write_file(CONF, conf.encode())

    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        return ProcessSpec(
            argv=[MARIADBD, f"--defaults-file={runner.abspath(CONF)}"],
            env={"TZ": "UTC"},  # the error log's times (see logs.py)
            stop_signal=signal.SIGTERM,  # clean shutdown: close clients, flush InnoDB
            stop_timeout=60.0,
        )

    def readiness(self, ctx: NodeContext) -> Readiness:
        # "ping" exits 0 whenever the server answers, even to a refused login.
        return Readiness(argv=(MARIADB_ADMIN, "--protocol=tcp", "-h", "localhost",
                               "-P", str(ctx.port), "ping"))

    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 io_timeout: float | None = None) -> pymysql.Connection:
        return pymysql.connect(
            host=ctx.host, port=ctx.port, user=ctx.service.user,
            password=ctx.service.password, ssl_ca=ca_file, ssl_verify_identity=True,
            connect_timeout=timeout, read_timeout=io_timeout, write_timeout=io_timeout,
            autocommit=True, charset="utf8mb4", sql_mode=SESSION_SQL_MODE,
            program_name="hoard",
        )

    def health(self, ctx: NodeContext, ca_file: str, timeout: float = 3.0) -> Health:
        try:
            with self._connect(ctx, ca_file, timeout, io_timeout=timeout) as conn:
                rows = _run(conn, "SELECT @@global.read_only")
        except Exception as exc:  # a probe reports, never raises
            lines = str(exc.args[-1] if exc.args else exc).strip().splitlines()
            return Health(False, lines[0] if lines else "unreachable")
        role = "replica" if rows and rows[0][0] else "primary"
        return Health(True, f"accepting connections as {role}")

    def metrics(self, ctx: NodeContext, ca_file: str, timeout: float = 2.0) -> dict[str, float]:
        with self._connect(ctx, ca_file, timeout, io_timeout=timeout) as conn:
            return collect_metrics(conn)

    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        self.set_admin_password(ctx, ca_file)  # creates the account if it is missing
        with self._connect(ctx, ca_file) as conn:
            account = (ctx.admin.user, "%")
            # See the module docstring: every database but the system ones, no global privilege.
            for schema in SYSTEM_SCHEMAS:
                _run(conn, f"GRANT SHOW VIEW ON {_db_pattern(schema)}.* TO %s@%s", account)
            _run(conn, "GRANT ALL PRIVILEGES ON `%%`.* TO %s@%s", account)
        self.create_database(ctx, ca_file, APP_DATABASE, "utf8mb4", "utf8mb4_unicode_ci")

    def set_admin_password(self, ctx: NodeContext, ca_file: str) -> None:
        # Galera replicates account changes to every member.
        self.create_user(ctx, ca_file, ctx.admin.user, ctx.admin.password)

    def apply_live(self, ctx: NodeContext, ca_file: str, names: list[str]) -> None:
        values = self.settings(ctx)
        with self._connect(ctx, ca_file) as conn:
            if "innodb_buffer_pool_size" in names:
                running = _run(conn, "SELECT @@global.performance_schema")[0][0]
                if ("ON" if running else "OFF") != values["performance_schema"]:
                    # The pool makes room for the Performance Schema, which changes only
                    # at the restart to come: the pool waits for it too (my.cnf has it).
                    names = [n for n in names if n != "innodb_buffer_pool_size"]
            for name in names:
                if name not in _DYNAMIC:
                    raise ValueError(f"{name} cannot change while the server runs")
                # A setting no longer configured goes back to the server's default.
                value = values.get(name)
                if value is None:
                    _run(conn, f"SET GLOBAL {name} = DEFAULT")
                elif sized := _SIZED.fullmatch(value):
                    number = int(sized[1]) * 1024 ** " KMG".index(sized[2] or " ")
                    _run(conn, f"SET GLOBAL {name} = {number}")
                elif value in ("ON", "OFF"):
                    _run(conn, f"SET GLOBAL {name} = {value}")
                elif name in _PARAMS and value in _PARAMS[name].allowed:
                    _run(conn, f"SET GLOBAL {name} = %s", (value,))
                else:  # only integers, ON/OFF and the schema's enum values get this far
                    raise ValueError(f"unexpected value for {name}: {value!r}")

    def connection_uri(self, host: str, port: int, creds: Credentials,
                       ca_file: str | None = None) -> str:
        """``mysql://user:password@host:port/app?ssl_verify_identity=true`` (and
        ``&ssl_ca=<ca file>`` with one), user and password percent-encoded. The
        query names are PyMySQL's ``connect()`` arguments: verify the server's
        certificate against the CA and its name against the host."""
        uri = creds.uri("mysql", host, port, f"{APP_DATABASE}?ssl_verify_identity=true")
        return uri + (f"&ssl_ca={quote(ca_file)}" if ca_file else "")

    def client_command(
        self, host: str, port: int, creds: Credentials, ca_file: str
    ) -> ClientCommand:
        return ClientCommand(
            argv=["mariadb", "--host", host, "--port", str(port), "--user", creds.user,
                  "--ssl-ca", ca_file, "--ssl-verify-server-cert", APP_DATABASE],
            env={"MYSQL_PWD": creds.password},
        )

    # --- SqlAccounts ------------------------------------------------------------

    def charsets(self) -> list[str]:
        return ["utf8mb4", "utf8mb3", "latin1", "ascii", "binary"]

    def _check_database(self, name: str) -> None:
        if name.lower() in self.reserved_databases:
            raise ValueError(f"{name!r} is a system database")

    def list_databases(self, ctx: NodeContext, ca_file: str) -> list[DatabaseInfo]:
        with self._connect(ctx, ca_file) as conn:
            rows = _run(conn,
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                "FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        return [DatabaseInfo(name, charset, collation) for name, charset, collation in rows
                if name.lower() not in self.reserved_databases]

    def create_database(self, ctx: NodeContext, ca_file: str, name: str,
                        charset: str | None, collation: str | None) -> None:
        self._check_database(name)
        with self._connect(ctx, ca_file) as conn:
            if charset is not None and not _run(
                conn, "SELECT 1 FROM information_schema.CHARACTER_SETS "
                      "WHERE CHARACTER_SET_NAME = %s", (charset,)):
                raise ValueError(f"unknown character set {charset!r}")
            if collation is not None:
                found = _run(conn, "SELECT CHARACTER_SET_NAME FROM information_schema.COLLATIONS "
                                   "WHERE COLLATION_NAME = %s", (collation,))
                if not found:
                    raise ValueError(f"unknown collation {collation!r}")
                if charset is not None and found[0][0] != charset:
                    raise ValueError(f"collation {collation!r} is for character set "
                                     f"{found[0][0]!r}, not {charset!r}")
            sql = f"CREATE DATABASE IF NOT EXISTS {_ident(name)}"
            args: tuple[str, ...] = ()
            if charset is not None:
                sql += " CHARACTER SET %s"
                args += (charset,)
            if collation is not None:
                sql += " COLLATE %s"
                args += (collation,)
            _run(conn, sql, args)

    def drop_database(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        self._check_database(name)
        with self._connect(ctx, ca_file) as conn:
            _run(conn, f"DROP DATABASE IF EXISTS {_ident(name)}")
            # Grants outlive a database in MariaDB: a new one of that name starts clean.
            for (user,) in _run(conn, "SELECT User FROM mysql.db WHERE Host = '%%' AND Db = %s",
                                (_escape_wild(name),)):
                self._revoke(conn, user, name)

    def list_users(self, ctx: NodeContext, ca_file: str) -> list[UserInfo]:
        hidden = sorted(self.reserved_users | {ctx.admin.user, ctx.service.user, ""})
        marks = ", ".join(["%s"] * len(hidden))
        with self._connect(ctx, ca_file) as conn:
            users = _run(conn, "SELECT User FROM mysql.user WHERE Host = '%%' AND is_role = 'N' "
                               f"AND User NOT IN ({marks}) ORDER BY User", tuple(hidden))
            grants = _run(conn, "SELECT User, Db FROM mysql.db WHERE Host = '%%' ORDER BY Db")
        return [UserInfo(name=user, databases=sorted(_unpattern(db) for u, db in grants
                                                     if u == user))
                for (user,) in users]

    def create_user(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            hashed = _native_hash(password)
            _run(conn, "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s REQUIRE SSL",
                 (name, "%", hashed))
            _run(conn, "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s REQUIRE SSL",
                 (name, "%", hashed))

    def drop_user(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            _run(conn, "DROP USER IF EXISTS %s@%s", (name, "%"))
            self._kill_sessions(conn, name)

    def set_password(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            _run(conn, "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s",
                 (name, "%", _native_hash(password)))

    def grant(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None:
        self._check_database(database)
        with self._connect(ctx, ca_file) as conn:
            _run(conn, f"GRANT ALL PRIVILEGES ON {_db_pattern(database)}.* TO %s@%s",
                 (user, "%"))

    def revoke(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None:
        self._check_database(database)
        with self._connect(ctx, ca_file) as conn:
            self._revoke(conn, user, database)

    def _revoke(self, conn: pymysql.Connection, user: str, database: str) -> None:
        try:
            _run(conn, f"REVOKE ALL PRIVILEGES ON {_db_pattern(database)}.* FROM %s@%s",
                 (user, "%"))
        except pymysql.MySQLError as exc:
            if exc.args[0] not in (1141, 1269):  # no such grant: already revoked
                raise
        # A session keeps the rights of the database it is using: end them.
        self._kill_sessions(conn, user)

    @staticmethod
    def _kill_sessions(conn: pymysql.Connection, user: str) -> None:
        _run(conn, "KILL CONNECTION USER %s@%s", (user, "%"))
