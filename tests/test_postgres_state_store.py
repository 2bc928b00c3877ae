"""Hoard on a PostgreSQL state store (the production layout), end to end."""

from __future__ import annotations

from tests.conftest import create_cluster, delete_cluster, hoard_server, wait_operation
from tests.pgserver import postgres_store
from tests.test_cluster_lock import at_once, one_accepted
from tests.test_lifecycle import connect


def test_create_and_delete_with_postgresql_state_store() -> None:
    with postgres_store() as url, hoard_server({"HOARD_DATABASE_URL": url}) as server:
        assert not (server.state_dir / "state.sqlite").exists()
        with server.client() as client:
            cluster = create_cluster(client, "on-pg", labels={"env": "prod", "tier": "db"})
            with connect(client, cluster["id"]) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            listed = client.get("/v2/clusters").json()["clusters"]
            assert [c["name"] for c in listed] == ["on-pg"]
            # The list read on the event loop (hoard/api/pgread.py) answers as FastAPI's route.
            for query in ("", "limit=1", "status=ACTIVE", "engine=redis",
                          f"marker={cluster['id']}", "limit=500"):
                lean = client.get(f"/v2/clusters?{query}")
                full = client.get(f"/v2/clusters?{query}&via=fastapi")
                assert lean.status_code == full.status_code == 200, (lean.text, full.text)
                assert lean.content == full.content, query
            # Label filters (the route's own path) on PostgreSQL's JSON operators.
            for selector, found in (("env=prod", ["on-pg"]), ("env=prod,tier=db", ["on-pg"]),
                                    ("env=dev", []), ("tier=db,zone=a", [])):
                answer = client.get("/v2/clusters", params={"label": selector})
                assert answer.status_code == 200, answer.text
                assert [c["name"] for c in answer.json()["clusters"]] == found, selector
            base = f"/v2/clusters/{cluster['id']}"
            for method, path, body in (("PATCH", base, {"storage_gb": 11}),
                                       ("POST", f"{base}/actions/restart", None),
                                       ("POST", f"{base}/databases", {"name": "shop"})):
                response = client.request(method, path, json=body)
                assert response.status_code in (201, 202), response.text
                op = wait_operation(client, response.json()["operation"]["id"])
                assert op["status"] == "succeeded", (method, path, op["error"])
            # Ten changes at once: the claim is a compare-and-set on PostgreSQL too.
            answers = at_once([lambda: client.post(f"{base}/actions/restart")] * 10)
            wait_operation(client, one_accepted(answers).json()["operation"]["id"])
            delete_cluster(client, cluster["id"])
