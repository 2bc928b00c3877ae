"""How each engine's log lines become entries, and every way a secret can be
written in them scrubbed: the engines' own code on sample lines in the formats
the servers write (tests/test_logs.py reads the real servers' logs)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hoard.api.routes.logs import parse_since
from hoard.domain.errors import InvalidInput
from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis
from hoard.engines.redis.logs import scrub_args

POSTGRESQL, MARIADB, REDIS = PostgreSQL(), MariaDB(), Redis()


@pytest.mark.parametrize(("engine", "line", "scrubbed"), [
    (POSTGRESQL, "ALTER ROLE a PASSWORD 'it''s secret'", "ALTER ROLE a PASSWORD '***'"),
    (POSTGRESQL, "CREATE ROLE a LOGIN ENCRYPTED PASSWORD E'a\\'secret' VALID UNTIL 'x'",
     "CREATE ROLE a LOGIN ENCRYPTED PASSWORD '***' VALID UNTIL 'x'"),
    (POSTGRESQL, "create role a password $q$secret$q$", "create role a password '***'"),
    (POSTGRESQL, "ALTER ROLE a PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'",
     "ALTER ROLE a PASSWORD '***'"),
    (POSTGRESQL, "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password 'secret')",
     "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password '***')"),
    (POSTGRESQL, "SELECT dblink_connect('host=h password=secret dbname=d')",
     "SELECT dblink_connect('host=h password='***' dbname=d')"),
    (POSTGRESQL, "ALTER ROLE a PASSWORD 'cut off secret", "ALTER ROLE a PASSWORD '***'"),
    (MARIADB, "CREATE USER 'u'@'%' IDENTIFIED BY 'secret'",
     "CREATE USER 'u'@'%' IDENTIFIED BY '***'"),
    (MARIADB, "ALTER USER u IDENTIFIED BY PASSWORD '*0123ABCD'",
     "ALTER USER u IDENTIFIED BY PASSWORD '***'"),
    (MARIADB, 'ALTER USER u IDENTIFIED VIA ed25519 USING "secret"',
     "ALTER USER u IDENTIFIED VIA ed25519 USING '***'"),
    (MARIADB, "SET PASSWORD = PASSWORD('secret')", "SET PASSWORD = PASSWORD('***')"),
    (MARIADB, "SET PASSWORD FOR 'u'@'%' = 'secret'", "SET PASSWORD FOR 'u'@'%' = '***'"),
    (MARIADB, "SELECT OLD_PASSWORD('secret')", "SELECT OLD_PASSWORD('***')"),
    (MARIADB, "CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='secret'",
     "CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='***'"),
    (REDIS, "connecting to rediss://app:secret@10.0.0.1:6379/0",
     "connecting to rediss://app:***@10.0.0.1:6379/0"),
    (REDIS, "requirepass=secret", "requirepass='***'"),
])
def test_secrets_are_scrubbed(engine: PostgreSQL | MariaDB | Redis, line: str,
                              scrubbed: str) -> None:
    assert engine.scrub(line) == scrubbed
    assert "secret" not in engine.scrub(line)


def test_words_that_are_no_secret_stay() -> None:
    for line in ('FATAL:  password authentication failed for user "bob"',
                 "Access denied for user 'bob'@'127.0.0.1' (using password: YES)",
                 "SELECT password_reset_at FROM accounts"):
        assert POSTGRESQL.scrub(line) == MARIADB.scrub(line) == line


@pytest.mark.parametrize(("args", "scrubbed"), [
    (["AUTH", "secret"], ["AUTH", "***"]),
    (["auth", "user", "secret"], ["auth", "***", "***"]),
    (["HELLO", "3", "AUTH", "user", "secret", "SETNAME", "c"],
     ["HELLO", "3", "AUTH", "user", "***", "SETNAME", "c"]),
    (["ACL", "SETUSER", "u", "on", ">secret", "<old", "#abc", "!def", "~*", "+@read"],
     ["ACL", "SETUSER", "u", "on", ">***", "<***", "#***", "!***", "~*", "+@read"]),
    (["CONFIG", "SET", "maxclients", "10", "requirepass", "secret"],
     ["CONFIG", "SET", "maxclients", "10", "requirepass", "***"]),
    (["MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "u", "secret", "KEYS", "k"],
     ["MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "u", "***", "KEYS", "k"]),
    (["SENTINEL", "SET", "m", "auth-pass", "secret"], ["SENTINEL", "SET", "m", "auth-pass", "***"]),
    (["GET", "k"], ["GET", "k"]),
])
def test_redis_commands_are_scrubbed_by_position(args: list[str], scrubbed: list[str]) -> None:
    assert scrub_args(args) == scrubbed


def test_postgresql_entries_span_lines_and_slow_ones_are_picked() -> None:
    text = ("2026-01-02 03:04:05.678 UTC [10] app@db LOG:  duration: 250.1 ms  statement: "
            "SELECT\n\tpg_sleep(0.25)\n"
            "2026-01-02 03:04:06.000 UTC [11] x@db FATAL:  password authentication failed\n")
    entries = POSTGRESQL.parse_log("server", text)
    assert [e.time for e in entries] == [datetime(2026, 1, 2, 3, 4, 5, 678000, UTC),
                                         datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)]
    assert entries[0].text.endswith("\tpg_sleep(0.25)")
    assert [e.text for e in POSTGRESQL.parse_log("slow", text)] == [entries[0].text]


def test_mariadb_slow_records_take_their_exact_time() -> None:
    text = ("/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-log. started with:\n"
            "Tcp port: 3306  Unix socket: \nTime                 Id Command    Argument\n"
            "# Time: 260102  3:04:05\n# User@Host: a[a] @  [127.0.0.1]\n"
            "# Query_time: 0.2  Lock_time: 0.0\nSET timestamp=1767323045;\nSELECT SLEEP(0.2);\n"
            "# User@Host: b[b] @  [127.0.0.1]\nSET timestamp=1767323046;\nSELECT 1;\n")
    first, second = MARIADB.parse_log("slow", text)
    assert first.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert first.text.startswith("# Time: ") and first.text.endswith("SELECT SLEEP(0.2);")
    assert second.time == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    error = MARIADB.parse_log("server", "2026-01-02  3:04:05 0 [Note] ready\nVersion: x\n")
    assert len(error) == 1 and error[0].time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_redis_output_lines_take_their_time() -> None:
    (entry,) = REDIS.parse_log("server", "1824:M 04 Dec 2026 07:42:36.656 * Ready\n")
    assert entry.time == datetime(2026, 12, 4, 7, 42, 36, 656000, UTC)
    assert REDIS.log_sources("slow") == ()  # kept in the server's memory only


def test_since_is_an_rfc3339_time_with_its_zone() -> None:
    at = datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    for text in ("2026-01-02T01:04:05Z", "2026-01-02t01:04:05z", "2026-01-02 03:04:05+02:00",
                 "2026-01-02T03:04:05 02:00", "2026-01-02T01:04:05.000000000Z"):
        assert parse_since(text) == at, text
    for text in ("2026-01-02T01:04:05", "2026-01-02", "1767315845", "yesterday",
                 "2026-02-30T00:00:00Z", "2026-01-02T01:04:05+0200"):
        with pytest.raises(InvalidInput, match="since"):
            parse_since(text)
