"""PostgreSQL: stock Debian packages, one server process per node.

The tenant's account is not a superuser and cannot create roles: either lets
it run programs on the host (``COPY ... TO PROGRAM``, directly or by granting
itself ``pg_execute_server_program``), and tenants never touch the machine.
Hoard keeps its own superuser, ``hoard``, for management and health checks;
tenant users and databases are made through Hoard's API.

Backups, WAL archiving and point-in-time restore live in
:mod:`hoard.engines.postgresql.backup` and are mixed in here.
"""

from __future__ import annotations

import signal
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import psycopg
from psycopg import sql

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
    Metrics,
    NodeContext,
    Parameter,
    SqlAccounts,
    UserInfo,
)
from hoard.engines.postgresql.backup import (
    DATA,
    RECOVERY_CONF,
    PostgreSQLBackups,
    archive_settings,
    conf_value,
    ensure_archive_dir,
)
from hoard.engines.postgresql.ha import PostgreSQLReplication
from hoard.engines.postgresql.logs import PostgreSQLLogs
from hoard.engines.postgresql.metrics import collect as collect_metrics
from hoard.engines.postgresql.pooler import PostgreSQLPooling
from hoard.engines.postgresql.verify import PostgreSQLVerify

PG_ROOT = Path("/usr/lib/postgresql")
DATA_INIT = PurePosixPath("data.init")
PWFILE = PurePosixPath("bootstrap/pwfile")
APP_DATABASE = "app"

HBA = """\
# Managed by Hoard. Only TLS connections with SCRAM passwords are accepted.
# Replication connections (pg_basebackup) only for Hoard's own account.
hostssl replication "{service}" all scram-sha-256
hostssl all all all scram-sha-256
"""

# Bounds by size and storage (checked at the API, see Parameter): shared_buffers
# at most 40% of memory (PostgreSQL's own guidance: more rarely helps, and the
# server maps all of it at start); work_mem and maintenance_work_mem 25% each
# (one sort may take work_mem several times over; autovacuum workers each take
# maintenance_work_mem). WAL sizes 25% of the storage each: max_wal_size is a
# soft limit WAL may overrun, and archived segments wait beside it until shipped.
PARAMETERS = [
    Parameter("max_connections", "integer", False, "Most concurrent connections", 10, 5000),
    Parameter("shared_buffers", "integer", False, "Shared buffer cache", 16, 1048576, unit="MB",
              memory_share=0.4),
    Parameter("work_mem", "integer", True, "Memory per sort or hash", 64, 2097151, unit="kB",
              memory_share=0.25),
    Parameter("maintenance_work_mem", "integer", True, "Memory for VACUUM, CREATE INDEX",
              1024, 2097151, unit="kB", memory_share=0.25),
    Parameter("max_wal_size", "integer", True, "WAL between automatic checkpoints (soft limit)",
              32, 1048576, unit="MB", storage_share=0.25),
    Parameter("min_wal_size", "integer", True, "WAL kept for reuse rather than removed",
              32, 1048576, unit="MB", storage_share=0.25),
    Parameter("wal_keep_size", "integer", True, "WAL kept for replicas that fall behind",
              0, 1048576, unit="MB", storage_share=0.25),
    Parameter("statement_timeout", "integer", True, "Abort statements after this long", 0,
              2147483647, unit="ms"),
    Parameter("idle_in_transaction_session_timeout", "integer", True,
              "End sessions idle in a transaction this long", 0, 2147483647, unit="ms"),
    Parameter("log_min_duration_statement", "integer", True,
              "Log statements slower than this (-1 disables)", -1, 2147483647, unit="ms"),
    Parameter("random_page_cost", "integer", True, "Planner cost of a random page read", 1, 100),
    Parameter("jit", "boolean", True, "Just-in-time compilation of queries"),
    Parameter("log_statement", "enum", True, "Which statements are logged",
              allowed=("none", "ddl", "mod", "all")),
    Parameter("default_transaction_isolation", "enum", True, "Isolation of new transactions",
              allowed=("read committed", "repeatable read", "serializable")),
]
_PARAM_UNITS = {p.name: p.unit for p in PARAMETERS}
_KNOWN_STATIC = {p.name for p in PARAMETERS if not p.dynamic} | {"max_connections"}
WAL_STORAGE_SHARE = 0.25  # derived WAL sizes stay within this share of the storage


def memory_settings(size: Size, storage_gb: int = 0) -> dict[str, str]:
    """Settings derived from the node's size (the usual 25% / 75% rules), WAL
    sizes scaled to memory and kept within a quarter of the storage (when known)."""
    mem = size.memory_mb
    max_connections = 50 if mem < 1024 else 100 if mem < 8192 else 200
    shared_buffers = max(32, mem // 4)
    work_mem = max(4, (mem - shared_buffers) // (max_connections * 3))
    max_wal = min(16384, max(1024, mem * 2))
    if storage_gb:
        max_wal = max(64, min(max_wal, int(storage_gb * 1024 * WAL_STORAGE_SHARE)))
    return {
        "max_connections": str(max_connections),
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{max(64, mem * 3 // 4)}MB",
        "maintenance_work_mem": f"{min(2048, max(16, mem // 16))}MB",
        "work_mem": f"{work_mem}MB",
        "max_wal_size": f"{max_wal}MB",
        "min_wal_size": _min_wal(max_wal),
        "checkpoint_completion_target": "0.9",
        "wal_compression": "on",
        "random_page_cost": "1.1",
    }


def scram_verifier(conn: psycopg.Connection, user: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` (``SCRAM-SHA-256$4096:salt$...``),
    computed on Hoard's side by libpq (``PQencryptPasswordConn``, the function
    psql's ``\\password`` uses). The server stores a verifier as it is given, so
    the statement that sets a password never carries it in clear: the server
    log (``log_statement=all``, ``log_min_duration_statement=0``, an error's
    statement) and ``pg_stat_activity`` show only the verifier."""
    verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    return verifier.decode()


def _min_wal(max_wal_mb: int) -> str:
    """WAL kept for reuse: a quarter of max_wal_size, at most 256 MB, at least the
    two 16 MB segments PostgreSQL requires."""
    return f"{max(32, min(256, max_wal_mb // 4))}MB"


def _render(name: str, value: int | bool | str) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value}{_PARAM_UNITS.get(name, '')}"


class PostgreSQL(Engine, SqlAccounts, Metrics, PostgreSQLBackups, PostgreSQLVerify,
                 PostgreSQLReplication, PostgreSQLLogs, PostgreSQLPooling):
    name = "postgresql"
    display_name = "PostgreSQL"
    standard_port = 5432
    client_binary = "psql"
    reserved_databases = frozenset({"postgres", "template0", "template1"})
    default_database = APP_DATABASE
    reserved_users = frozenset({"hoard", "admin", "postgres", "public"})

    def installed_versions(self) -> list[str]:
        found = [p.parent.parent.name for p in PG_ROOT.glob("*/bin/postgres")]
        return sorted(found, key=lambda v: int(v) if v.isdigit() else 0, reverse=True)

    def parameters(self) -> list[Parameter]:
        return PARAMETERS

    def settings(self, ctx: NodeContext) -> dict[str, str]:
        values = memory_settings(ctx.size, ctx.storage_gb)
        values.update({k: _render(k, v) for k, v in ctx.parameters.items()})
        if "max_wal_size" in ctx.parameters and "min_wal_size" not in ctx.parameters:
            values["min_wal_size"] = _min_wal(int(ctx.parameters["max_wal_size"]))
        return values

    def is_dynamic(self, setting: str) -> bool:
        return setting not in _KNOWN_STATIC

    def _bin(self, version: str, tool: str) -> str:
        return str(PG_ROOT / version / "bin" / tool)

    def readiness(self, ctx: NodeContext) -> Readiness:
        return Readiness(argv=(self._bin(ctx.version, "pg_isready"), "-q", "-h", "localhost",
                               "-p", str(ctx.port)))

    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
        ensure_archive_dir(runner)
        if runner.exists(DATA / "PG_VERSION"):
            return
        # initdb writes into a scratch directory that is renamed when complete,
        # so a crash mid-way leaves nothing that looks like a finished cluster.
        runner.remove_tree(DATA_INIT)
        runner.write_file(PWFILE, ctx.service.password.encode() + b"\n")
        try:
            runner.run([
                self._bin(ctx.version, "initdb"),
                "-D", runner.abspath(DATA_INIT),
                f"--username={ctx.service.user}",
                f"--pwfile={runner.abspath(PWFILE)}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--data-checksums",
            ])
        finally:
            runner.remove_tree(PWFILE.parent)
        runner.rename(DATA_INIT, DATA)

    def server_settings(self, ctx: NodeContext, runner: NodeRunner) -> dict[str, str]:
        """Every setting ``configure`` writes: fixed ones (TLS, no Unix sockets),
        WAL archiving, and ``settings(ctx)``. Replicated members hand the same
        values to Patroni."""
        fixed = {
            "listen_addresses": ctx.bind,
            "port": str(ctx.port),
            "unix_socket_directories": "",
            "ssl": "on",
            "ssl_cert_file": runner.abspath(TLS_CERT),
            "ssl_key_file": runner.abspath(TLS_KEY),
            "ssl_min_protocol_version": "TLSv1.2",
            "password_encryption": "scram-sha-256",
            # Startup after a crash or a restore syncs the node's own filesystem in
            # one call instead of fsyncing every file (each node has its own volume).
            "recovery_init_sync_method": "syncfs",
            "hba_file": runner.abspath(DATA / "pg_hba.conf"),
            "log_destination": "stderr",
            "log_line_prefix": "%m [%p] %q%u@%d ",  # the time first: see logs.py
            "log_timezone": "UTC",
            "datestyle": "iso, mdy",
            "timezone": "UTC",
            "lc_messages": "C.UTF-8",
            "default_text_search_config": "pg_catalog.english",
        }
        return {**fixed, **archive_settings(runner), **self.settings(ctx)}

    def hba(self, ctx: NodeContext) -> str:
        return HBA.format(service=ctx.service.user)

    def configure(self, ctx: NodeContext, runner: NodeRunner) -> None:
        values = self.server_settings(ctx, runner)
        ensure_archive_dir(runner)
        conf = "# Managed by Hoard: changes here are overwritten.\n" + "".join(
            f"{k} = {conf_value(v)}\n" for k, v in values.items()
        )
        # Last, so it wins: recovery settings while a restored node replays WAL.
        conf += f"include_if_exists = {conf_value(runner.abspath(RECOVERY_CONF))}\n"
        runner.write_file(DATA / "postgresql.conf", conf.encode())
        runner.write_file(DATA / "pg_hba.conf", self.hba(ctx).encode())

    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        return ProcessSpec(
            argv=[self._bin(ctx.version, "postgres"), "-D", runner.abspath(DATA)],
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
            stop_timeout=60.0,
        )

    def _connect(
        self, ctx: NodeContext, ca_file: str, timeout: float = 10, dbname: str = "postgres"
    ) -> psycopg.Connection:
        return psycopg.connect(
            host=ctx.host, port=ctx.port, user=ctx.service.user, password=ctx.service.password,
            dbname=dbname, sslmode="verify-full", sslrootcert=ca_file,
            connect_timeout=max(1, int(timeout)), autocommit=True,
            application_name="hoard",
        )

    def health(self, ctx: NodeContext, ca_file: str, timeout: float = 3.0) -> Health:
        try:
            with self._connect(ctx, ca_file, timeout) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error as exc:
            return Health(False, str(exc).strip().splitlines()[0] if str(exc) else "unreachable")
        role = "replica" if row and row[0] else "primary"
        return Health(True, f"accepting connections as {role}")

    def metrics(self, ctx: NodeContext, ca_file: str, timeout: float = 2.0) -> dict[str, float]:
        with self._connect(ctx, ca_file, timeout) as conn:
            return collect_metrics(conn)

    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        self.set_admin_password(ctx, ca_file)
        self.create_database(ctx, ca_file, APP_DATABASE, None, None, owner=ctx.admin.user)

    def set_admin_password(self, ctx: NodeContext, ca_file: str) -> None:
        # Replicas (streaming or Patroni's) take the role's new verifier from the WAL.
        self._ensure_role(ctx, ca_file, ctx.admin.user, ctx.admin.password, "CREATEDB")

    def apply_live(self, ctx: NodeContext, ca_file: str, names: list[str]) -> None:
        # postgresql.conf already holds the new values: a reload makes them current.
        with self._connect(ctx, ca_file) as conn:
            conn.execute("SELECT pg_reload_conf()")

    def connection_uri(self, host: str, port: int, creds: Credentials,
                       ca_file: str | None = None) -> str:
        """libpq's URI; without ``sslrootcert`` libpq reads the CA from
        ``PGSSLROOTCERT`` or ``~/.postgresql/root.crt``."""
        uri = creds.uri("postgresql", host, port, f"{APP_DATABASE}?sslmode=verify-full")
        return uri + (f"&sslrootcert={quote(ca_file)}" if ca_file else "")

    def client_command(
        self, host: str, port: int, creds: Credentials, ca_file: str
    ) -> ClientCommand:
        return ClientCommand(
            argv=["psql", f"host={host} port={port} user={creds.user} dbname={APP_DATABASE} "
                          "sslmode=verify-full"],
            env={"PGPASSWORD": creds.password, "PGSSLROOTCERT": ca_file},
        )

    # --- SqlAccounts ------------------------------------------------------------

    def _ensure_role(
        self, ctx: NodeContext, ca_file: str, name: str, password: str, extra: str = ""
    ) -> None:
        with self._connect(ctx, ca_file) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            # No CREATEROLE, no SUPERUSER: see the module docstring.
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEROLE " + extra
                        + " PASSWORD {}").format(sql.Identifier(name),
                                                 sql.Literal(scram_verifier(conn, name, password)))
            )

    def charsets(self) -> list[str]:
        return ["UTF8", "LATIN1", "SQL_ASCII", "EUC_JP", "WIN1252"]

    def list_databases(self, ctx: NodeContext, ca_file: str) -> list[DatabaseInfo]:
        with self._connect(ctx, ca_file) as conn:
            rows = conn.execute(
                "SELECT datname, pg_encoding_to_char(encoding), datcollate FROM pg_database "
                "WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY datname"
            ).fetchall()
        return [DatabaseInfo(name, charset, collation) for name, charset, collation in rows]

    def create_database(self, ctx: NodeContext, ca_file: str, name: str,
                        charset: str | None, collation: str | None,
                        owner: str | None = None) -> None:
        with self._connect(ctx, ca_file) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            if collation is not None and not conn.execute(
                "SELECT 1 FROM pg_collation WHERE collname = %s", (collation,)
            ).fetchone():
                raise ValueError(f"unknown collation {collation!r}")
            create = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0")
            parts: list[sql.Composable] = [
                create.format(sql.Identifier(name), sql.Identifier(owner or ctx.admin.user))
            ]
            if charset:
                parts.append(sql.SQL("ENCODING {}").format(sql.Literal(charset)))
            if collation:
                parts.append(sql.SQL("LC_COLLATE {0} LC_CTYPE {0}").format(
                    sql.Literal(collation)))
            elif charset and charset != "UTF8":
                parts.append(sql.SQL("LC_COLLATE 'C' LC_CTYPE 'C'"))
            conn.execute(sql.SQL(" ").join(parts))
            # Only the owner (the tenant admin) and granted users may connect.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(name)))

    def drop_database(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def list_users(self, ctx: NodeContext, ca_file: str) -> list[UserInfo]:
        with self._connect(ctx, ca_file) as conn:
            rows = conn.execute(
                "SELECT r.rolname, COALESCE(array_agg(d.datname ORDER BY d.datname) "
                "FILTER (WHERE d.datname IS NOT NULL), '{}') FROM pg_roles r "
                "LEFT JOIN pg_database d ON NOT d.datistemplate AND d.datname <> 'postgres' "
                "AND has_database_privilege(r.oid, d.oid, 'CREATE') "
                "WHERE r.rolcanlogin AND r.rolname <> ALL(%s) GROUP BY r.rolname "
                "ORDER BY r.rolname",
                (sorted(self.reserved_users | {ctx.admin.user, ctx.service.user}),),
            ).fetchall()
        return [UserInfo(name=name, databases=list(dbs)) for name, dbs in rows]

    def create_user(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        self._ensure_role(ctx, ca_file, name, password)

    def drop_user(self, ctx: NodeContext, ca_file: str, name: str) -> None:
        for db in self.list_databases(ctx, ca_file):
            with self._connect(ctx, ca_file, dbname=db.name) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
                if not exists:
                    return
                # Objects the user made pass to the database's owner.
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(ctx.admin.user)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with self._connect(ctx, ca_file) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def set_password(self, ctx: NodeContext, ca_file: str, name: str, password: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(scram_verifier(conn, name, password))))

    def grant(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None:
        with self._connect(ctx, ca_file) as conn:
            conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(user)))
        with self._connect(ctx, ca_file, dbname=database) as conn:
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(
                sql.Identifier(user)))
            conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(user)))
            conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(
                sql.Identifier(user)))

    def revoke(self, ctx: NodeContext, ca_file: str, user: str, database: str) -> None:
        with self._connect(ctx, ca_file, dbname=database) as conn:
            for target in ("ALL TABLES IN SCHEMA public", "ALL SEQUENCES IN SCHEMA public",
                           "SCHEMA public"):
                conn.execute(sql.SQL("REVOKE ALL ON " + target + " FROM {}").format(
                    sql.Identifier(user)))
        with self._connect(ctx, ca_file) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                sql.Identifier(database), sql.Identifier(user)))
