"""PostgreSQL: stock Debian packages, one server process per node.

The tenant's account is not a superuser and cannot create roles: either lets
it run programs on the host (``COPY ... TO PROGRAM``, directly or by granting
itself ``pg_execute_server_program``), and tenants never touch the machine. Hoard
keeps its own superuser, ``hoard``, for management and health checks.
"""

from __future__ import annotations

import signal
from pathlib import Path, PurePosixPath

import psycopg
from psycopg import sql

from hoard.domain.catalog import Size
from hoard.domain.nodes import NodeRunner, ProcessSpec
from hoard.engines.base import Credentials, Engine, Health, NodeContext, Parameter

PG_ROOT = Path("/usr/lib/postgresql")
DATA = PurePosixPath("data")
DATA_INIT = PurePosixPath("data.init")
TLS_CERT = PurePosixPath("tls/server.crt")
TLS_KEY = PurePosixPath("tls/server.key")
PWFILE = PurePosixPath("bootstrap/pwfile")
APP_DATABASE = "app"

HBA = """\
# Managed by Hoard. Only TLS connections with SCRAM passwords are accepted.
hostssl all all all scram-sha-256
"""


def memory_settings(size: Size) -> dict[str, str]:
    """Memory settings derived from the node's size (the usual 25% / 75% rules)."""
    mem = size.memory_mb
    max_connections = 50 if mem < 1024 else 100 if mem < 8192 else 200
    shared_buffers = max(32, mem // 4)
    work_mem = max(4, (mem - shared_buffers) // (max_connections * 3))
    return {
        "max_connections": str(max_connections),
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{max(64, mem * 3 // 4)}MB",
        "maintenance_work_mem": f"{min(2048, max(16, mem // 16))}MB",
        "work_mem": f"{work_mem}MB",
        "max_wal_size": f"{min(16384, max(1024, mem * 2))}MB",
        "min_wal_size": "256MB",
        "checkpoint_completion_target": "0.9",
        "wal_compression": "on",
        "random_page_cost": "1.1",
    }


class PostgreSQL(Engine):
    name = "postgresql"
    display_name = "PostgreSQL"
    default_port = 5432

    def versions(self) -> list[str]:
        found = [p.parent.parent.name for p in PG_ROOT.glob("*/bin/postgres")]
        return sorted(found, key=lambda v: int(v) if v.isdigit() else 0, reverse=True)

    def parameters(self) -> list[Parameter]:
        return [
            Parameter("max_connections", "integer", False, "Most concurrent connections", 10, 5000),
            Parameter("work_mem", "integer", True, "Memory per sort or hash, in kB", 64, 2097151),
            Parameter(
                "statement_timeout", "integer", True, "Abort statements after this many ms", 0,
                2147483647,
            ),
            Parameter(
                "log_min_duration_statement", "integer", True,
                "Log statements slower than this many ms (-1 disables)", -1, 2147483647,
            ),
        ]

    def _bin(self, version: str, tool: str) -> str:
        return str(PG_ROOT / version / "bin" / tool)

    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
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

    def configure(
        self, ctx: NodeContext, runner: NodeRunner, tls_cert: bytes, tls_key: bytes
    ) -> None:
        runner.write_file(TLS_CERT, tls_cert, 0o644)
        runner.write_file(TLS_KEY, tls_key, 0o600)
        settings = {
            "listen_addresses": f"'{ctx.host}'",
            "port": str(ctx.port),
            "unix_socket_directories": "''",
            "ssl": "on",
            "ssl_cert_file": f"'{runner.abspath(TLS_CERT)}'",
            "ssl_key_file": f"'{runner.abspath(TLS_KEY)}'",
            "ssl_min_protocol_version": "'TLSv1.2'",
            "password_encryption": "'scram-sha-256'",
            "hba_file": f"'{runner.abspath(DATA / 'pg_hba.conf')}'",
            "log_destination": "'stderr'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "datestyle": "'iso, mdy'",
            "timezone": "'UTC'",
            "lc_messages": "'C.UTF-8'",
            "default_text_search_config": "'pg_catalog.english'",
        }
        settings.update({k: f"'{v}'" for k, v in memory_settings(ctx.size).items()})
        conf = "# Managed by Hoard: changes here are overwritten.\n" + "".join(
            f"{k} = {v}\n" for k, v in settings.items()
        )
        runner.write_file(DATA / "postgresql.conf", conf.encode())
        runner.write_file(DATA / "pg_hba.conf", HBA.encode())

    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        return ProcessSpec(
            argv=[self._bin(ctx.version, "postgres"), "-D", runner.abspath(DATA)],
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
            stop_timeout=60.0,
        )

    def _connect(
        self, ctx: NodeContext, ca_file: str, timeout: float, dbname: str = "postgres"
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

    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        user = sql.Identifier(ctx.admin.user)
        with self._connect(ctx, ca_file, 10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (ctx.admin.user,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                # No CREATEROLE: up to PostgreSQL 15 it lets a role grant itself
                # pg_execute_server_program, i.e. shell access as the OS user.
                # Roles are managed through Hoard's API instead.
                sql.SQL(verb + " ROLE {} LOGIN CREATEDB NOCREATEROLE PASSWORD {}").format(
                    user, sql.Literal(ctx.admin.password)
                )
            )
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)
            ).fetchone()
            if not has_db:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(APP_DATABASE), user
                    )
                )

    def connection_uri(self, host: str, port: int, creds: Credentials, ca_file: str) -> str:
        return (
            f"postgresql://{creds.user}:{creds.password}@{host}:{port}/{APP_DATABASE}"
            f"?sslmode=verify-full&sslrootcert={ca_file}"
        )

    def client_argv(self, uri: str) -> list[str]:
        return ["psql", uri]
