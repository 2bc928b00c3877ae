"""What collecting a node's metrics costs: pgbench TPS with collection on and off,
and the CPU the collection takes per node per minute.

One PostgreSQL cluster made by Hoard; Hoard is restarted between rounds with
``HOARD_METRICS_INTERVAL`` set to the interval under test ("on") or to 0
("off"). The node keeps running across the restarts (Hoard re-adopts it), so
every round measures the same server, data and cache; rounds alternate
on/off, off/on, ... so drift on a shared machine falls on both sides.

CPU: after the rounds, with Hoard stopped and the cluster idle, this process
takes ``--samples`` samples of the node exactly as the observer does
(``hoard.workflows.sampling.node_sample`` and the store write), one after the
other; its own CPU time and the node's (its cgroup's processes, less what the
node used idle over as long) divided by the samples, times the samples a
minute at ``--interval``, is what collecting costs per node per minute on each
side of the wire. (Comparing whole-process CPU with collection on and off was
tried first: the observer's health checks every 2 s and the other work on a
shared machine swamp a difference this small.)

    .venv/bin/python bench/metrics_cost.py --interval 10 --duration 15 --rounds 6
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

from _common import Hoard, create_cluster, load_note, make_state_dir, median, teardown, tenant_uri

from hoard.providers import cgroups
from hoard.settings import Settings
from hoard.store.models import Cluster
from hoard.workflows.sampling import node_sample, record
from hoard.workflows.services import build

PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")


def pgbench(uri: str, argv: list[str]) -> str:
    run = subprocess.run([str(PGBENCH), *argv, uri], capture_output=True, text=True,
                         timeout=3600, check=False, env={"PATH": "/usr/bin:/bin"})
    if run.returncode != 0:
        raise RuntimeError(f"pgbench {argv} failed: {run.stderr[-2000:]}")
    return run.stdout


def tps(uri: str, args: argparse.Namespace) -> float:
    out = pgbench(uri, ["-n", "-c", str(args.clients), "-j", str(args.jobs),
                        "-T", str(args.duration), "-M", "prepared"])
    found = re.search(r"tps = ([0-9.]+) \(without initial", out)
    if not found:
        raise RuntimeError("unexpected pgbench output:\n" + out)
    return float(found.group(1))


def node_seconds(node_id: str) -> float:
    return cgroups.usage(node_id)["cpu_seconds_total"]


def sample_cost(state_dir: Path, cluster_id: str, samples: int) -> tuple[float, float]:
    """CPU seconds one sample costs this process (as the observer) and the node's
    server, from ``samples`` samples taken in a row (Hoard must be stopped: this
    process opens its store)."""
    settings = Settings(state_dir=state_dir)  # type: ignore[call-arg]
    svc = build(settings, migrate_schema=False)
    with svc.store.session() as s:
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        node = cluster.nodes[0]
    usage = svc.provider_for(node).storage_usage(node.id, cluster.storage_gb)
    node_sample(cluster, node, True, usage)  # the first connection warms caches
    wall0, node0 = time.monotonic(), node_seconds(node.id)
    time.sleep(5)  # the node's idle CPU, to take off what it uses anyway
    idle = (node_seconds(node.id) - node0) / (time.monotonic() - wall0)
    wall0, cpu0, node0 = time.monotonic(), time.process_time(), node_seconds(node.id)
    for _ in range(samples):
        record({node.id: node_sample(cluster, node, True, usage)})
    wall = time.monotonic() - wall0
    ours = time.process_time() - cpu0
    server = node_seconds(node.id) - node0 - idle * wall
    return ours / samples, max(0.0, server) / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0,
                        help="HOARD_METRICS_INTERVAL when on (seconds)")
    parser.add_argument("--size", default="small")
    parser.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    parser.add_argument("--clients", type=int, default=4, help="pgbench -c")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench -j")
    parser.add_argument("--duration", type=int, default=30, help="pgbench -T per round")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of on/off rounds")
    parser.add_argument("--samples", type=int, default=300,
                        help="samples taken in a row to measure one's CPU")
    args = parser.parse_args()
    envs = {"on": {"HOARD_METRICS_INTERVAL": str(args.interval)},
            "off": {"HOARD_METRICS_INTERVAL": "0"}}
    print("start: " + load_note(), flush=True)
    state_dir = make_state_dir("hoard-bench-metrics-")
    hoard = Hoard(state_dir, envs["on"])
    results: dict[str, list[float]] = {"on": [], "off": []}
    cost = (0.0, 0.0)
    try:
        hoard.start()
        with hoard.client() as client:
            cluster_id = create_cluster(client, "bench", args.size)
            uri = tenant_uri(client, cluster_id)
        pgbench(uri, ["-i", "-q", "-s", str(args.scale)])

        def switch(side: str) -> None:
            nonlocal hoard
            hoard.stop()
            hoard = Hoard(state_dir, envs[side])
            hoard.start()

        for r in range(args.rounds):
            for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
                switch(side)
                results[side].append(tps(uri, args))
                print(f"round {r} {time.strftime('%H:%M:%S')}: collection {side:3} "
                      f"{results[side][-1]:9.1f} tps", flush=True)
        hoard.stop()
        cost = sample_cost(state_dir, cluster_id, args.samples)
    finally:
        teardown(hoard, state_dir)
    print("end:   " + load_note())
    on, off = median(results["on"]), median(results["off"])
    verdict = "met" if on / off >= 0.98 else "MISSED"
    print(f"\npgbench -c {args.clients} -j {args.jobs} -T {args.duration} -M prepared, scale "
          f"{args.scale}, size {args.size}, {args.rounds} rounds each, collection every "
          f"{args.interval:g} s:")
    print(f"  on  median {on:9.1f} tps\n  off median {off:9.1f} tps")
    print(f"  ratio on/off = {on / off:.3f}  (target >= 0.98: {verdict})")
    paired = median([a / b for a, b in zip(results["on"], results["off"], strict=True)])
    print(f"  median of per-round ratios = {paired:.3f}  (each round runs both back to back)")
    per_minute = 60 / args.interval
    print(f"  one sample: Hoard {cost[0] * 1000:.2f} ms CPU, the node's server "
          f"{cost[1] * 1000:.2f} ms CPU ({args.samples} in a row)")
    print(f"  collection CPU per node per minute ({per_minute:g} samples): Hoard "
          f"{cost[0] * per_minute * 1000:.1f} ms, the node's server "
          f"{cost[1] * per_minute * 1000:.1f} ms")


if __name__ == "__main__":
    main()
