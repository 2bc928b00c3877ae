"""kill -9 of Hoard in the middle of a create, then a restart: the workflow resumes
and ends with the cluster ACTIVE, with no leftover processes, ports or directories."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import HoardServer, delete_cluster, hoard_server, wait_operation
from tests.test_lifecycle import assert_no_debris, connect


def processes_under(root: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(root):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def parents(pids: list[int]) -> dict[int, int]:
    """Each process's parent, for those still there: a server's short-lived
    children (a connection's backend) may end between the listing and this."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
            found[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    return found


def kill_during(server: HoardServer, client: httpx.Client, op_id: str, step: str) -> None:
    """Poll the operation and kill -9 Hoard once ``step`` has done its work but
    before it is recorded done (the step pauses there under HOARD_PAUSE_STEP)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        op = client.get(f"/v2/operations/{op_id}").json()
        paused = {s["name"] for s in op["steps"] if "paused" in s.get("detail", "")}
        if step in paused or op["status"] != "running":
            break
        time.sleep(0.005)
    assert op["status"] == "running", f"the create ended before {step!r} could be interrupted"
    server.kill9()


@pytest.mark.parametrize("step", ["bootstrap", "start", None])
def test_kill9_mid_create_then_restart(step: str | None) -> None:
    # The step pauses after its work, before it is recorded: the worst moment to die.
    pause = {"HOARD_PAUSE_STEP": step} if step else {}
    with hoard_server(pause) as server, server.client() as client:
        accepted = client.post("/v2/clusters", json={
            "name": "phoenix", "engine": "postgresql", "size": "nano"}).json()
        op_id, cluster_id = accepted["operation"]["id"], accepted["cluster"]["id"]
        if step is None:
            server.kill9()  # right after the API accepted it
        else:
            kill_during(server, client, op_id, step)
        server.env.pop("HOARD_PAUSE_STEP", None)
        server.start()
        op = wait_operation(client, op_id)
        assert op["status"] == "succeeded", op
        cluster = client.get(f"/v2/clusters/{cluster_id}").json()
        assert cluster["status"] == "ACTIVE"
        node = cluster["members"][0]
        # Exactly one server runs for the node: nothing was started twice.
        node_dir = server.state_dir / "nodes" / node["id"]
        tree = parents(processes_under(node_dir))
        roots = [p for p, up in tree.items() if up not in tree]
        assert len(roots) == 1, roots
        with connect(client, cluster_id) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("admin",)
        delete_cluster(client, cluster_id)
        assert_no_debris(server, [node["id"]], [(node["host"], node["port"])])
        assert processes_under(node_dir) == []
