"""Client loads for MariaDB (``mariadb-slap``) and Redis (``redis-benchmark``):
the engines' own C load tools, run identically against both targets, over TLS.
A target is a dict: host, port, user, password, ca, and database (MariaDB)."""

from __future__ import annotations

import csv
import io
import re
import shlex
import subprocess
import time
from typing import Any

TABLE = "bench_oltp"
# One "transaction" of the MariaDB load: pick a random key, read its row by
# primary key, update it (autocommit, so the UPDATE commits and flushes the redo
# log on both sides: innodb_flush_log_at_trx_commit = 1 everywhere).
SLAP_STATEMENTS = [
    "SET @k = FLOOR(1 + RAND() * {rows})",
    f"SELECT c FROM {TABLE} WHERE id = @k",
    f"UPDATE {TABLE} SET k = k + 1 WHERE id = @k",
]


def _mysql(target: dict[str, Any]) -> Any:
    import pymysql

    return pymysql.connect(host=target["host"], port=target["port"], user=target["user"],
                           password=target["password"], database=target["database"],
                           ssl_ca=target["ca"], connect_timeout=10, read_timeout=1800,
                           autocommit=True)


def load_mariadb(target: dict[str, Any], rows: int) -> float:
    """A sysbench-like table of ``rows`` rows (about 250 bytes each), made with
    INSERT ... SELECT from the sequence engine, 100,000 rows per statement."""
    t0 = time.perf_counter()
    with _mysql(target) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, "
                    "c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY (k)) ENGINE=InnoDB")
        for start in range(1, rows + 1, 100_000):
            end = min(rows, start + 99_999)
            cur.execute(f"INSERT INTO {TABLE} SELECT seq, FLOOR(1 + RAND() * {rows}), "
                        "LEFT(REPEAT(MD5(seq), 4), 120), LEFT(REPEAT(SHA1(seq), 2), 60) "
                        f"FROM seq_{start}_to_{end}")
        cur.execute(f"ANALYZE TABLE {TABLE}")
        cur.fetchall()
    return time.perf_counter() - t0


def slap(target: dict[str, Any], rows: int, concurrency: int, queries: int,
         verify: bool) -> float:
    """Statements per second of ``mariadb-slap`` running SLAP_STATEMENTS on
    ``concurrency`` connections, ``queries`` statements in all."""
    argv = ["mariadb-slap", "--host", target["host"], "--port", str(target["port"]),
            "--user", target["user"], f"--ssl-ca={target['ca']}",
            *(["--ssl-verify-server-cert"] if verify else []),
            f"--create-schema={target['database']}", "--no-drop",
            f"--concurrency={concurrency}", "--iterations=1",
            f"--number-of-queries={queries}", "--delimiter=;",
            "--query=" + ";".join(SLAP_STATEMENTS).format(rows=rows)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False,
                          env={"PATH": "/usr/bin:/bin", "MYSQL_PWD": target["password"]})
    found = re.search(r"Average number of seconds to run all queries: ([0-9.]+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"mariadb-slap failed: {proc.stdout[-1000:]} {proc.stderr[-2000:]}")
    return queries / float(found.group(1))


def redis_benchmark(target: dict[str, Any], argv: list[str]) -> dict[str, float]:
    """Requests per second for each test of ``redis-benchmark ARGV --csv`` over TLS."""
    auth = ["--user", target["user"]] if target["user"] != "default" else []
    cmd = ["redis-benchmark", "-h", target["host"], "-p", str(target["port"]), "--tls",
           "--cacert", target["ca"], *auth, "-a", target["password"], *argv, "--csv"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False,
                          env={"PATH": "/usr/bin:/bin"})
    rows = [r for r in csv.reader(io.StringIO(proc.stdout)) if len(r) > 1 and r[0] != "test"]
    if proc.returncode != 0 or not rows:
        raise RuntimeError(f"redis-benchmark failed: {proc.stdout[-1000:]} "
                           f"{proc.stderr[-2000:]}")
    return {r[0]: float(r[1]) for r in rows}


def measure(engine: str, target: dict[str, Any], args: Any, warm: bool = False
            ) -> dict[str, float]:
    """One measurement of ``bench/dataplane.py``'s load for ``engine`` (a quarter
    of the MariaDB statements when ``warm``)."""
    if engine == "mariadb":
        queries = args.slap_queries // 4 if warm else args.slap_queries
        qps = slap(target, args.mariadb_rows, args.slap_concurrency, queries, verify=True)
        return {"statements/s": qps, "transactions/s": qps / 3}
    return redis_benchmark(target, shlex.split(args.redis_args))
