"""Create-to-connectable time: a cluster through Hoard's API versus the same
engine's server made by hand, in the same run: ``initdb`` + ``pg_ctl start``
(PostgreSQL), ``mariadb-install-db`` + ``mariadbd`` (MariaDB), ``redis-server``
(Redis), each up to a first connection.

Why: the issue's target is that Hoard adds at most 50% on top of what an
operator typing the commands would wait (hoard/raw <= 1.5).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import time
from pathlib import Path

import httpx
import psycopg
from _common import (
    DB_USER,
    PG_BIN,
    Hoard,
    delete_cluster,
    free_port,
    load_note,
    make_state_dir,
    median,
    owned_dir,
    run_as_db_user,
    teardown,
    tenant_uri,
    wait_operation,
)
from _engines import ENGINES, RAW_TRIALS, connect_once


def step_durations(op: dict) -> dict[str, float]:
    """Seconds spent in each recorded step of an operation."""
    out: dict[str, float] = {}
    for step in op["steps"]:
        if "started_at" in step and "finished_at" in step:
            start = dt.datetime.fromisoformat(step["started_at"].rstrip("Z"))
            end = dt.datetime.fromisoformat(step["finished_at"].rstrip("Z"))
            out[step["name"]] = (end - start).total_seconds()
    return out


def hoard_trial(client: httpx.Client, engine: str, name: str,
                size: str) -> tuple[float, dict[str, float]]:
    """POST, poll the operation every 20 ms, fetch credentials, connect once
    with the engine's client library over TLS."""
    t0 = time.perf_counter()
    response = client.post("/v2/clusters", json={"name": name, "engine": engine,
                                                 "size": size})
    response.raise_for_status()
    cluster_id = response.json()["cluster"]["id"]
    op = wait_operation(client, response.json()["operation"]["id"], poll=0.02)
    t_op = time.perf_counter()
    connect_once(engine, tenant_uri(client, cluster_id))
    elapsed = time.perf_counter() - t0
    parts = {"POST -> operation succeeded": t_op - t0,
             "credentials + connect": elapsed - (t_op - t0)}
    parts.update(step_durations(op))
    delete_cluster(client, cluster_id)
    return elapsed, parts


def raw_postgresql(base: Path, index: int) -> tuple[float, dict[str, float]]:
    """initdb, pg_ctl -w start, connect once; as the database OS user."""
    trial = owned_dir(base / f"raw-{index}")
    data = trial / "data"
    port = free_port()
    started = False
    try:
        t0 = time.perf_counter()
        run_as_db_user([str(PG_BIN / "initdb"), "-D", str(data)], cwd=trial)
        t1 = time.perf_counter()
        started = True
        run_as_db_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(trial / "log"),
                        "-o", f"-p {port} -k {trial} -c listen_addresses=127.0.0.1",
                        "-w", "start"], cwd=trial)
        t2 = time.perf_counter()
        psycopg.connect(host="127.0.0.1", port=port, user=DB_USER, dbname="postgres",
                        connect_timeout=10).close()
        t3 = time.perf_counter()
        return t3 - t0, {"initdb": t1 - t0, "pg_ctl -w start": t2 - t1, "connect": t3 - t2}
    finally:
        if started:
            with contextlib.suppress(RuntimeError):
                run_as_db_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                "-w", "stop"], cwd=trial)
        shutil.rmtree(trial, ignore_errors=True)


def summarize(label: str, parts: list[dict[str, float]]) -> None:
    for key in parts[0]:
        values = [p[key] for p in parts if key in p]
        print(f"    {label:5} {key:28} median {median(values) * 1000:8.0f} ms")


def bench_engine(client: httpx.Client, engine: str, raw_base: Path,
                 args: argparse.Namespace) -> float:
    """Warm-up and timed trials of one engine, alternating which side goes first."""
    raw_trial = raw_postgresql if engine == "postgresql" else RAW_TRIALS[engine]
    times: dict[str, list[float]] = {"hoard": [], "raw": []}
    parts: dict[str, list[dict[str, float]]] = {"hoard": [], "raw": []}
    for i in range(args.warmup + args.trials):
        timed = i >= args.warmup
        # Alternate which side goes first so drift hits both equally.
        for side in ("hoard", "raw") if i % 2 == 0 else ("raw", "hoard"):
            if side == "hoard":
                elapsed, part = hoard_trial(client, engine, f"bench-{engine}-{i}", args.size)
            else:
                elapsed, part = raw_trial(raw_base, i)
            if timed:
                times[side].append(elapsed)
                parts[side].append(part)
            tag = "" if timed else " (warm-up)"
            print(f"{engine} trial {i}: {side:5} {elapsed * 1000:7.0f} ms{tag}", flush=True)
    h, r = median(times["hoard"]), median(times["raw"])
    print(f"\n{engine}: create -> connectable, median of {args.trials} trials "
          f"(size {args.size}):")
    for side, value in (("hoard", h), ("raw", r)):
        print(f"  {side:5} {value * 1000:8.0f} ms   (min {min(times[side]) * 1000:.0f}, "
              f"max {max(times[side]) * 1000:.0f})")
        summarize(side, parts[side])
    verdict = "met" if h / r <= 1.5 else "MISSED"
    print(f"  {engine} ratio hoard/raw = {h / r:.2f}  (target <= 1.5: {verdict})\n",
          flush=True)
    return h / r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=[*ENGINES, "all"], default="all")
    parser.add_argument("--trials", type=int, default=7, help="timed trials (>= 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed trials of each first")
    parser.add_argument("--size", default="small", help="Hoard size (default small)")
    args = parser.parse_args()
    if args.trials < 5:
        parser.error("--trials must be at least 5")
    engines = list(ENGINES) if args.engine == "all" else [args.engine]

    print("start: " + load_note(), flush=True)
    state_dir = make_state_dir("hoard-bench-provision-")
    raw_base = make_state_dir("hoard-bench-raw-")
    hoard = Hoard(state_dir)
    ratios: dict[str, float] = {}
    try:
        hoard.start()
        with hoard.client() as client:
            for engine in engines:
                ratios[engine] = bench_engine(client, engine, raw_base, args)
    finally:
        teardown(hoard, state_dir)
        shutil.rmtree(raw_base, ignore_errors=True)

    print("end:   " + load_note())
    for engine, ratio in ratios.items():
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"  {engine:10} hoard/raw = {ratio:.2f}  (target <= 1.5: {verdict})")


if __name__ == "__main__":
    main()
