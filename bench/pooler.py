"""Connections through a cluster's pooler (PgBouncer) against straight to its
server: pgbench with 500 clients, each transaction on a new connection (``-C``:
TLS and SCRAM every time), ``SELECT 1`` so that connecting is what is measured.

Why: a pooler is asked for by tenants whose clients connect often and many at
once (serverless functions, PHP, many small services); the issue asks for the
ratio pooler/direct. The server of a small node takes 100 connections
(max_connections from its size), so 500 direct clients cannot all be served:
the direct run at 500 counts the clients the server refused, and a second
direct run with as many clients as the server has room for gives the fair
throughput to compare with.

    .venv/bin/python bench/pooler.py [--size small] [--clients 500] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from _common import PG_BIN, Hoard, load_note, make_state_dir, teardown, wait_operation

SCRIPT = "SELECT 1;\n"


def pgbench(host: str, port: int, clients: int, seconds: int, env: dict[str, str],
            script: Path) -> dict[str, Any]:
    """One run: transactions per second (connection setup included), and how many
    clients the server or pooler refused (pgbench aborts those)."""
    run = subprocess.run(
        [str(PG_BIN / "pgbench"), "-n", "-C", "-c", str(clients), "-j", "2",
         "-T", str(seconds), "-f", str(script), "-h", host, "-p", str(port), "-U", "admin",
         "app"], env=env, capture_output=True, text=True, timeout=seconds + 300, check=False)
    tps = re.search(r"tps = ([\d.]+)", run.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", run.stdout)
    aborted = len(re.findall(r"client \d+ aborted", run.stderr))
    refused = sorted(set(re.findall(r"FATAL:  ([^\n]+)", run.stderr)))[:3]
    return {"clients": clients, "tps": float(tps.group(1)) if tps else 0.0,
            "transactions": int(done.group(1)) if done else 0, "aborted_clients": aborted,
            "exit": run.returncode, "errors": refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    state = make_state_dir("hoard-bench-pooler-")
    hoard = Hoard(state)
    try:
        hoard.start()
        with hoard.client() as client:
            made = client.post("/v2/clusters", json={
                "name": "pooled", "engine": "postgresql", "size": args.size,
                "pooler": {"mode": "transaction", "max_client_conn": args.clients + 100}})
            made.raise_for_status()
            wait_operation(client, made.json()["operation"]["id"])
            cid = made.json()["cluster"]["id"]
            cluster = client.get(f"/v2/clusters/{cid}").json()
            creds = client.get(f"/v2/clusters/{cid}/credentials").json()
            ca = state / "ca.pem"
            ca.write_bytes(client.get("/v2/ca.pem").content)
        ca.chmod(0o644)
        by_role = {e["role"]: e for e in cluster["endpoints"]}
        script = state / "select.sql"
        script.write_text(SCRIPT)
        env = {**os.environ, "PGPASSWORD": creds["password"], "PGSSLMODE": "verify-full",
               "PGSSLROOTCERT": str(ca)}
        pooler, direct = by_role["pooler"], by_role["read-write"]
        max_connections = int(subprocess.run(
            [str(PG_BIN / "psql"), "-XAtc", "SHOW max_connections",
             f"host={direct['host']} port={direct['port']} user=admin dbname=app"],
            env=env, capture_output=True, text=True, check=True).stdout.strip())
        fits = max(1, max_connections - 10)  # room left by Hoard's own checks
        results = {
            "pooler": pgbench(pooler["host"], pooler["port"], args.clients, args.seconds,
                              env, script),
            "direct": pgbench(direct["host"], direct["port"], args.clients, args.seconds,
                              env, script),
            "direct_within_limit": pgbench(direct["host"], direct["port"], fits,
                                           args.seconds, env, script),
        }
    finally:
        teardown(hoard, state)
    p, d, f = results["pooler"], results["direct"], results["direct_within_limit"]
    print(load_note())
    print(f"size {args.size}: server max_connections {max_connections}; {args.clients} "
          f"clients, -C (a new TLS+SCRAM connection per transaction), {args.seconds} s each")
    for name, r in results.items():
        print(f"  {name:20} {r['clients']:4} clients: {r['tps']:9.1f} tps, "
              f"{r['aborted_clients']} clients refused {'; '.join(r['errors'])}")
    ratio = p["tps"] / d["tps"] if d["tps"] else float("inf")
    ratio_fit = p["tps"] / f["tps"] if f["tps"] else float("inf")
    print(f"ratio pooler/direct at {args.clients} clients: {ratio:.2f}; "
          f"pooler ({args.clients}) / direct ({fits}): {ratio_fit:.2f}")
    print(json.dumps({"size": args.size, "max_connections": max_connections, **results,
                      "ratio": ratio, "ratio_within_limit": ratio_fit}))


if __name__ == "__main__":
    main()
