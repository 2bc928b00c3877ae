"""What a tenant does to a database that its logs should show, with each
engine's own client: a refused login, a slow statement, statements that carry a
password in clear."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
import pymysql
import redis

# The slow-query threshold, set low through each engine's configuration parameters
# (PostgreSQL also logs DDL, where passwords are set). Redis logs every command and
# keeps many: the health checks would otherwise push a test's entries out.
SLOW_CONFIG: dict[str, dict[str, Any]] = {
    "postgresql": {"log_min_duration_statement": 100, "log_statement": "ddl"},
    "mariadb": {"slow_query_log": True, "long_query_time": 0},
    "redis": {"slowlog-log-slower-than": 0, "slowlog-max-len": 10000},
}


def _parts(uri: str) -> tuple[Any, dict[str, list[str]]]:
    parsed = urlparse(uri)
    return parsed, parse_qs(parsed.query)


def _mariadb(uri: str, user: str | None = None, password: str | None = None
             ) -> pymysql.Connection:
    parsed, query = _parts(uri)
    return pymysql.connect(
        host=parsed.hostname, port=parsed.port, user=user or unquote(parsed.username),
        password=password if password is not None else unquote(parsed.password),
        database=parsed.path.lstrip("/"), ssl_ca=query["ssl_ca"][0],
        ssl_verify_identity=True, connect_timeout=10, autocommit=True)


def _redis(uri: str, user: str | None = None, password: str | None = None) -> redis.Redis:
    if user is None:
        return redis.Redis.from_url(uri, socket_timeout=10)
    parsed, query = _parts(uri)
    return redis.Redis(host=parsed.hostname, port=parsed.port, username=user,
                       password=password, ssl=True, ssl_ca_certs=query["ssl_ca_certs"][0],
                       socket_timeout=10)


def failed_login(engine: str, uri: str, user: str) -> str:
    """Try to log in as ``user`` with a wrong password; the refusal's words."""
    try:
        if engine == "postgresql":
            psycopg.connect(uri, user=user, password="wrong-password", connect_timeout=10)
        elif engine == "mariadb":
            _mariadb(uri, user, "wrong-password")
        else:
            _redis(uri, user, "wrong-password").ping()
    except (psycopg.OperationalError, pymysql.MySQLError, redis.AuthenticationError,
            redis.ResponseError) as exc:
        return str(exc)
    raise AssertionError(f"{engine} let {user} in with a wrong password")


def slow_statement(engine: str, uri: str, marker: str) -> None:
    """A statement that takes a while (at least 0.2 s), carrying ``marker``."""
    if engine == "postgresql":
        with psycopg.connect(uri, connect_timeout=10) as conn:
            conn.execute(f"SELECT pg_sleep(0.2), '{marker}'")
    elif engine == "mariadb":
        with _mariadb(uri) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT SLEEP(0.2), '{marker}'")
    else:
        with _redis(uri) as client:  # a script busy for a while: no sleep in Redis
            client.eval(f"local n = 0 for i = 1, 3000000 do n = n + i end return '{marker}'", 0)


def fast_statement(engine: str, uri: str, marker: str) -> None:
    if engine == "postgresql":
        with psycopg.connect(uri, connect_timeout=10) as conn:
            conn.execute(f"SELECT '{marker}'")


def passwords_in_clear(engine: str, uri: str, user: str, password: str,
                       literals: list[str]) -> None:
    """Statements with password literals: ``user`` (logged in with ``password``)
    sets its own to ``literals[0]``; the admin tries to make an account with
    ``literals[1]`` (refused: it may not); ``literals[2]`` rides in a connection
    URI inside a slow statement."""
    own, other, in_uri = literals
    uri_text = f"postgresql://someone:{in_uri}@db.example/app"
    if engine == "postgresql":
        with psycopg.connect(uri, user=user, password=password, connect_timeout=10) as conn:
            conn.execute(f"ALTER ROLE {user} PASSWORD '{own}'")
        with psycopg.connect(uri, connect_timeout=10, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE ROLE intruder LOGIN PASSWORD '{other}'")
            except psycopg.errors.InsufficientPrivilege:
                pass
            else:
                raise AssertionError("the admin could create a role")
            conn.execute(f"SELECT pg_sleep(0.15), '{uri_text}'")
    elif engine == "mariadb":
        with _mariadb(uri, user, password) as conn, conn.cursor() as cur:
            cur.execute(f"SET PASSWORD = PASSWORD('{own}')")
        with _mariadb(uri) as conn, conn.cursor() as cur:
            try:
                cur.execute(f"CREATE USER 'intruder'@'%' IDENTIFIED BY '{other}'")
            except pymysql.MySQLError:
                pass
            else:
                raise AssertionError("the admin could create a user")
            cur.execute(f"SELECT SLEEP(0.15), '{uri_text}'")
    else:
        with _redis(uri, user, password) as client:
            client.execute_command("AUTH", user, password)
            client.execute_command("HELLO", "2", "AUTH", user, password)
        with _redis(uri) as client:
            for command in (("ACL", "SETUSER", "intruder", "on", f">{other}"),
                            ("CONFIG", "SET", "requirepass", own)):
                try:
                    client.execute_command(*command)
                except redis.ResponseError:
                    pass
                else:
                    raise AssertionError(f"the admin could run {command[:2]}")
            client.eval(f"local n = 0 for i = 1, 300000 do n = n + i end return '{uri_text}'",
                        0)
