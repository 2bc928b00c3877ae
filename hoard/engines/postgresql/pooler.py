"""PgBouncer in front of a PostgreSQL cluster: its configuration and its users.

Why an ``auth_file`` of SCRAM secrets, kept in sync, and not ``auth_query``:

- PgBouncer 1.18 (Debian 12's) runs ``auth_query`` inside the database the
  client asks for, so its lookup function would have to exist in every
  database, including those the tenant's admin makes with plain SQL (it has
  CREATEDB), which Hoard never sees.
- ``auth_query`` signs in to the server as a lookup role, whose password the
  pooler must hold in clear. With SCRAM secrets in ``auth_file`` the pooler
  holds no credential that opens the server: it checks a client's SCRAM proof
  against the secret, then signs in to the server with the keys that very
  proof carries (the secrets are PostgreSQL's own, byte for byte, as this
  requires). Hoard's own superuser is never listed, so it cannot sign in
  through the pooler.

The file is 0600, the pooler account's own. Hoard rewrites it after every
account change it makes and the observer on every pass (which catches the
admin changing its own password with ALTER ROLE); a changed file is reloaded
(SIGHUP), never restarted, so clients stay connected.
"""

from __future__ import annotations

import signal
from abc import abstractmethod

import psycopg

from hoard.domain.nodes import ProcessSpec, ServiceFile, ServiceSpec
from hoard.engines.base import NodeContext, PoolerTarget, Pooling

PGBOUNCER = "/usr/sbin/pgbouncer"
# Each client takes a file descriptor: the soft limit is raised to the hard one
# before PgBouncer starts (it logs both, and max_client_conn, at start).
RAISE_FD_LIMIT = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"'
CONFIG, USERS = "pgbouncer.ini", "users.txt"
CERT, KEY, CA = "server.crt", "server.key", "ca.crt"
USERS_QUERY = (
    "SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin AND NOT rolsuper "
    "AND NOT rolreplication AND rolname <> %s AND rolpassword LIKE 'SCRAM-SHA-256$%%' "
    "AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) ORDER BY rolname")


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def users_file(rows: list[tuple[str, str]]) -> bytes:
    """``auth_file`` lines: ``"name" "SCRAM-SHA-256$..."``."""
    return "".join(f"{_quoted(name)} {_quoted(secret)}\n" for name, secret in rows).encode()


def pools(max_connections: int) -> tuple[int, int]:
    """Server connections per user and database, and per database: a quarter and
    a half of the server's limit, so direct clients, replication and Hoard's own
    checks keep the rest."""
    return max(2, max_connections // 4), max(2, max_connections // 2)


def render(target: PoolerTarget, max_connections: int) -> str:
    """pgbouncer.ini: every path relative to the pooler's working directory."""
    per_user, per_db = pools(max_connections)
    host, port = target.server
    listen_host, listen_port = target.listen
    lines = [
        "; Managed by Hoard: rewritten on every change.",
        "[databases]",
        # No user here: PgBouncer signs in as the client, with the client's SCRAM keys.
        f"* = host={host} port={port}",
        "",
        "[pgbouncer]",
        f"listen_addr = {listen_host}",
        f"listen_port = {listen_port}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {USERS}",
        f"pool_mode = {target.mode}",
        f"max_client_conn = {target.max_client_conn}",
        f"default_pool_size = {per_user}",
        f"max_db_connections = {per_db}",
        "reserve_pool_size = 0",
        # After a failover the first logins may fail for a moment: retry soon.
        "server_login_retry = 1",
        "server_connect_timeout = 5",
        "ignore_startup_parameters = extra_float_digits",
        "client_tls_sslmode = require",
        f"client_tls_cert_file = {CERT}",
        f"client_tls_key_file = {KEY}",
        "client_tls_protocols = secure",
        "server_tls_sslmode = verify-full",
        f"server_tls_ca_file = {CA}",
        "server_tls_protocols = secure",
        "log_connections = 0",
        "log_stats = 0",
        "log_disconnections = 0",
        "stats_period = 60",
    ]
    return "\n".join(lines) + "\n"


class PostgreSQLPooling(Pooling):
    """PgBouncer for PostgreSQL clusters (mixed into the engine)."""

    @abstractmethod
    def settings(self, ctx: NodeContext) -> dict[str, str]: ...

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 dbname: str = "postgres") -> psycopg.Connection: ...

    def pooler_spec(self, ctx: NodeContext, target: PoolerTarget, users: ServiceFile
                    ) -> ServiceSpec:
        config = render(target, int(self.settings(ctx)["max_connections"]))
        return ServiceSpec(
            process=ProcessSpec(["/bin/sh", "-c", RAISE_FD_LIMIT, "pgbouncer", PGBOUNCER,
                                 CONFIG], stop_signal=signal.SIGTERM,
                                stop_timeout=5.0, name="pooler"),
            files=(ServiceFile(CONFIG, config.encode()), users,
                   ServiceFile(CA, target.ca_pem, 0o644),
                   ServiceFile(CERT, target.cert_pem, 0o644, keep=True),
                   ServiceFile(KEY, target.key_pem, 0o600, keep=True)),
            reload_signal=signal.SIGHUP)

    def pooler_users(self, ctx: NodeContext, ca_file: str) -> ServiceFile:
        with self._connect(ctx, ca_file) as conn:
            rows = conn.execute(USERS_QUERY, (ctx.service.user,)).fetchall()
        return ServiceFile(USERS, users_file([(str(n), str(p)) for n, p in rows]))
