"""Hoard on a PostgreSQL state store (the production layout), end to end."""

from __future__ import annotations

from tests.conftest import create_cluster, delete_cluster, hoard_server
from tests.pgserver import postgres_store
from tests.test_lifecycle import connect


def test_create_and_delete_with_postgresql_state_store() -> None:
    with postgres_store() as url, hoard_server({"HOARD_DATABASE_URL": url}) as server:
        assert not (server.state_dir / "state.sqlite").exists()
        with server.client() as client:
            cluster = create_cluster(client, "on-pg")
            with connect(client, cluster["id"]) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            listed = client.get("/v2/clusters").json()["clusters"]
            assert [c["name"] for c in listed] == ["on-pg"]
            delete_cluster(client, cluster["id"])
