"""Throughput on a Hoard-made cluster versus a stock Debian-style server given
the same CPU and memory cgroup limits, alternating over rounds: pgbench
(PostgreSQL), mariadb-slap (MariaDB), redis-benchmark (Redis).

Why: Hoard derives each engine's configuration from the node size; the issue's
target is that this is never slower than the stock defaults (hoard/stock >= 1.0).
Both targets are reached over TLS on 127.0.0.1 with passwords.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
from _common import (
    PG_BIN,
    ForegroundServer,
    Hoard,
    create_cluster,
    free_port,
    load_note,
    make_state_dir,
    median,
    owned_dir,
    run_as_db_user,
    teardown,
    tenant_uri,
    wait_connectable,
)
from _engines import ENGINES, Server, stock_mariadb, stock_redis, uri_parts
from _loads import load_mariadb, measure

from hoard.domain.catalog import SIZES
from hoard.providers import cgroups, volumes

STOCK_USER = "bench"
# What Debian's pg_createcluster adds to initdb's postgresql.conf (ports and paths
# adapted); initdb's own file already holds shared_buffers = 128MB,
# max_connections = 100, max_wal_size = 1GB and the other defaults.
DEBIAN_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{root}'
ssl = on
ssl_cert_file = '{root}/server.crt'
ssl_key_file = '{root}/server.key'
log_line_prefix = '%m [%p] %q%u@%d '
cluster_name = '15/bench'
"""


def start_stock(root: Path, group: str, cpus: float, memory_mb: int) -> tuple[ForegroundServer,
                                                                              str, str]:
    """initdb as pg_createcluster does, a self-signed cert, start inside cgroups."""
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "hoard-db", "hoard-db")
    data = root / "data"
    run_as_db_user([str(PG_BIN / "initdb"), "-D", str(data), f"--username={STOCK_USER}",
                    f"--pwfile={pwfile}", "--auth-local=peer", "--auth-host=scram-sha-256",
                    "--encoding=UTF8"], cwd=root)
    pwfile.unlink()
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes",
                    "-newkey", "rsa:2048", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(root / "server.key"), "-out", str(root / "server.crt")],
                   check=True, capture_output=True)
    for name in ("server.key", "server.crt"):
        shutil.chown(root / name, "hoard-db", "hoard-db")
        os.chmod(root / name, 0o600 if name.endswith(".key") else 0o644)
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(DEBIAN_CONF.format(port=port, root=root))
    limits = cgroups.apply(group, cpus, memory_mb)
    server = ForegroundServer(data, limits.procs_files)
    server.start()
    base = f"host=127.0.0.1 port={port} user={STOCK_USER} password={password} sslmode=require"
    try:
        wait_connectable(base + " dbname=postgres", server.proc)
        with psycopg.connect(base + " dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
    except BaseException:
        server.stop()  # the caller never sees this server, so stop it here
        raise
    return server, base + " dbname=app", f"{limits.report}"


def stock_root(base: Path, storage_gb: int | None, name: str = "pg") -> Path:
    """The stock server's directory: on a loop volume of the filesystem Hoard's
    nodes get here (hoard.providers.volumes) when ``storage_gb`` is given, else a
    plain directory."""
    root = base / name
    if storage_gb is None:
        return owned_dir(root)
    volumes.ensure(base / f"{name}.img", root, storage_gb, volumes.probe().filesystem)
    shutil.chown(root, "hoard-db", "hoard-db")
    root.chmod(0o700)
    return root


def pgbench(conninfo: str, argv: list[str], timeout: float) -> str:
    proc = subprocess.run([str(PG_BIN / "pgbench"), *argv, conninfo], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench {argv} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def run_tps(conninfo: str, args: argparse.Namespace, seconds: int) -> tuple[float, float]:
    argv = ["-c", str(args.clients), "-j", str(args.jobs), "-T", str(seconds),
            "-M", args.protocol, *(["-n"] if args.no_vacuum else [])]
    out = pgbench(conninfo, argv, timeout=seconds + 300)
    tps = re.search(r"tps = ([0-9.]+) \(without initial", out)
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    if not tps or not lat:
        raise RuntimeError("unexpected pgbench output:\n" + out)
    return float(tps.group(1)), float(lat.group(1))


def server_cgroups(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return ", ".join(line.split(":", 2)[2] for line in lines
                     if any(c in line.split(":")[1].split(",") for c in ("cpu", "memory")))


def run_postgresql(args: argparse.Namespace) -> None:
    size = SIZES[args.size]
    print("start: " + load_note(), flush=True)
    state_dir = make_state_dir("hoard-bench-dataplane-")
    stock_base = make_state_dir("hoard-bench-stock-")
    group = "bench-stock-" + secrets.token_hex(4)
    hoard = Hoard(state_dir)
    stock: ForegroundServer | None = None
    results: dict[str, list[tuple[float, float]]] = {"hoard": [], "stock": []}
    try:
        hoard.start()
        with hoard.client() as client:
            cluster_id = create_cluster(client, "bench", args.size, "postgresql")
            view = client.get(f"/v2/clusters/{cluster_id}").json()
            uri = tenant_uri(client, cluster_id)
        node_dir = state_dir / "nodes" / view["members"][0]["id"]
        on_volume = os.path.ismount(node_dir) and args.stock_storage == "same"
        stock, stock_dsn, stock_limits = start_stock(
            stock_root(stock_base, view["storage_gb"] if on_volume else None), group,
            size.cpus, size.memory_mb)
        targets = {"hoard": uri, "stock": stock_dsn}
        hoard_pid = int(json.loads((state_dir / "private" / "nodes" / node_dir.name
                                    / "process.json").read_text())["pid"])
        print(f"size {args.size}: {size.cpus:g} CPU, {size.memory_mb} MiB")
        print(f"  hoard limits: {view['members'][0]['limits']}")
        print(f"  hoard server cgroups: {server_cgroups(hoard_pid)}")
        print(f"  hoard data on a loop volume: {os.path.ismount(node_dir)}; "
              f"stock data on a loop volume: {on_volume}")
        print(f"  stock limits: {stock_limits}")
        assert stock.proc is not None
        print(f"  stock server cgroups: {server_cgroups(stock.proc.pid)}", flush=True)
        for dsn in targets.values():
            pgbench(dsn, ["-i", "-q", "-s", str(args.scale)], timeout=1800)
            if args.warmup:
                run_tps(dsn, args, args.warmup)
        for r in range(args.rounds):
            order = ["hoard", "stock"] if r % 2 == 0 else ["stock", "hoard"]
            for name in order:
                tps, lat = run_tps(targets[name], args, args.duration)
                results[name].append((tps, lat))
                print(f"round {r} {time.strftime('%H:%M:%S')}: {name:5} {tps:9.1f} tps  "
                      f"latency {lat:.2f} ms", flush=True)
    finally:
        try:
            if stock is not None:
                stock.stop()
            cgroups.remove(group)
            volumes.remove(stock_base / "pg.img", stock_base / "pg")
            shutil.rmtree(stock_base, ignore_errors=True)
        finally:
            teardown(hoard, state_dir)

    print("end:   " + load_note())
    h = median([t for t, _ in results["hoard"]])
    s = median([t for t, _ in results["stock"]])
    print(f"\npgbench -c {args.clients} -j {args.jobs} -T {args.duration} -M {args.protocol}, "
          f"scale {args.scale}, {args.rounds} rounds, size {args.size}:")
    for name, value in (("hoard", h), ("stock", s)):
        lat = median([x for _, x in results[name]])
        print(f"  {name:5} median {value:9.1f} tps   latency median {lat:.2f} ms")
    verdict = "met" if h / s >= 1.0 else "MISSED"
    print(f"  ratio hoard/stock = {h / s:.2f}  (target >= 1.0: {verdict})")
    paired = median([a[0] / b[0] for a, b in zip(results["hoard"], results["stock"],
                                                  strict=True)])
    print(f"  median of per-round ratios = {paired:.2f}  (each round runs both back to back)")


def run_other(engine: str, args: argparse.Namespace) -> None:
    """MariaDB or Redis: Hoard's cluster and a stock server in the same limits."""
    size = SIZES[args.size]
    print(f"start ({engine}): " + load_note(), flush=True)
    state_dir = make_state_dir(f"hoard-bench-dataplane-{engine}-")
    stock_base = make_state_dir("hoard-bench-stock-")
    group = "bench-stock-" + secrets.token_hex(4)
    hoard = Hoard(state_dir)
    stock: Server | None = None
    results: dict[str, list[dict[str, float]]] = {"hoard": [], "stock": []}
    try:
        hoard.start()
        with hoard.client() as client:
            cluster_id = create_cluster(client, "bench", args.size, engine)
            view = client.get(f"/v2/clusters/{cluster_id}").json()
            uri = tenant_uri(client, cluster_id)
        node_dir = state_dir / "nodes" / view["members"][0]["id"]
        on_volume = os.path.ismount(node_dir) and args.stock_storage == "same"
        root = stock_root(stock_base, view["storage_gb"] if on_volume else None, engine)
        limits = cgroups.apply(group, size.cpus, size.memory_mb)
        if engine == "mariadb":
            stock, stock_target = stock_mariadb(root, limits.procs_files,
                                                args.mariadb_stock_binlog == "yes")
        else:
            stock, stock_target = stock_redis(root, limits.procs_files,
                                              args.redis_stock_aof == "yes")
        targets = {"hoard": uri_parts(uri), "stock": stock_target}
        hoard_pid = int(json.loads((state_dir / "private" / "nodes" / node_dir.name
                                    / "process.json").read_text())["pid"])
        assert stock.proc is not None
        print(f"size {args.size}: {size.cpus:g} CPU, {size.memory_mb} MiB; hoard limits "
              f"{view['members'][0]['limits']}; stock limits {limits.report}")
        print(f"  hoard server cgroups: {server_cgroups(hoard_pid)}")
        print(f"  stock server cgroups: {server_cgroups(stock.proc.pid)}")
        print(f"  loop volumes: hoard {os.path.ismount(node_dir)}, stock {on_volume}")
        print(f"  stock binary log: {args.mariadb_stock_binlog}" if engine == "mariadb" else
              f"  stock appendonly: {args.redis_stock_aof} (appendfsync everysec)", flush=True)
        for name, target in targets.items():
            if engine == "mariadb":
                took = load_mariadb(target, args.mariadb_rows)
                print(f"  {name}: loaded {args.mariadb_rows} rows in {took:.1f} s", flush=True)
            measure(engine, target, args, warm=True)
        for r in range(args.rounds):
            for name in ["hoard", "stock"] if r % 2 == 0 else ["stock", "hoard"]:
                got = measure(engine, targets[name], args)
                results[name].append(got)
                shown = "  ".join(f"{k} {v:9.1f}" for k, v in got.items())
                print(f"round {r} {time.strftime('%H:%M:%S')}: {name:5} {shown}", flush=True)
    finally:
        try:
            if stock is not None:
                stock.stop()
            cgroups.remove(group)
            volumes.remove(stock_base / f"{engine}.img", stock_base / engine)
            shutil.rmtree(stock_base, ignore_errors=True)
        finally:
            teardown(hoard, state_dir)

    print("end:   " + load_note())
    what = (f"mariadb-slap -c {args.slap_concurrency}, {args.slap_queries} statements, "
            f"{args.mariadb_rows} rows" if engine == "mariadb" else
            f"redis-benchmark {args.redis_args}")
    print(f"\n{engine}: {what}, {args.rounds} rounds, size {args.size}:")
    for metric in results["hoard"][0]:
        h = median([x[metric] for x in results["hoard"]])
        s = median([x[metric] for x in results["stock"]])
        paired = median([a[metric] / b[metric] for a, b in zip(results["hoard"],
                                                               results["stock"], strict=True)])
        verdict = "met" if h / s >= 1.0 else "MISSED"
        print(f"  {metric:14} hoard {h:10.1f}  stock {s:10.1f}  ratio {h / s:.2f} "
              f"(per-round median {paired:.2f}; target >= 1.0: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=[*ENGINES, "all"], default="all")
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    parser.add_argument("--scale", type=int, default=20, help="pgbench -i -s")
    parser.add_argument("--clients", type=int, default=8, help="pgbench -c")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    parser.add_argument("--duration", type=int, default=30, help="pgbench -T, seconds")
    parser.add_argument("--protocol", default="prepared", help="pgbench -M")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 3)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed pgbench seconds")
    parser.add_argument("--no-vacuum", action="store_true", help="pgbench -n")
    parser.add_argument("--mariadb-rows", type=int, default=1_000_000)
    parser.add_argument("--slap-concurrency", type=int, default=8)
    parser.add_argument("--slap-queries", type=int, default=60_000, help="statements in all")
    parser.add_argument("--mariadb-stock-binlog", choices=["yes", "no"], default="no",
                        help="yes: a binary log like Hoard's (sync_binlog 1); no: Debian's")
    parser.add_argument("--redis-args", default="-t set,get -n 200000 -c 50 -P 1 --threads 2")
    parser.add_argument("--redis-stock-aof", choices=["yes", "no"], default="yes",
                        help="yes: like Hoard's; no: Debian's default (appendonly no)")
    parser.add_argument("--stock-storage", choices=["same", "plain"], default="same",
                        help="same: a loop volume like Hoard's node when it has one")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")
    for engine in ENGINES if args.engine == "all" else [args.engine]:
        if engine == "postgresql":
            run_postgresql(args)
        else:
            run_other(engine, args)


if __name__ == "__main__":
    main()
