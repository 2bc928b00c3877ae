"""The manifests that deploy Hoard on Kubernetes (deploy/kubernetes) are valid
for three Kubernetes minor versions' official schemas, unknown fields refused;
the workers' Role grants exactly the calls the provider makes; and every
image the provider or the manifests name has a Dockerfile under images/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hoard.engines.registry import ENGINES
from hoard.providers.kubernetes import render
from hoard.providers.kubernetes.client import RIGHTS
from hoard.settings import Settings
from tests.kube_support import load_yaml, strictly_valid

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
FILES = sorted(DEPLOY.glob("*.yaml"))


def documents() -> list[dict[str, Any]]:
    return [doc for path in FILES for doc in load_yaml(path)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_manifest_is_valid_for_three_kubernetes_versions(path: Path) -> None:
    for manifest in load_yaml(path):
        strictly_valid(manifest)


def test_the_deployment_has_api_workers_store_and_least_privilege() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents()}
    assert {("Deployment", "hoard-api"), ("Deployment", "hoard-worker"),
            ("StatefulSet", "hoard-store"), ("Job", "hoard-migrate"),
            ("Role", "hoard-provider"), ("RoleBinding", "hoard-provider")} <= kinds
    assert not any(kind in ("ClusterRole", "ClusterRoleBinding") for kind, _ in kinds)


def test_the_role_grants_exactly_what_the_provider_calls() -> None:
    role, = (d for d in documents() if d["kind"] == "Role"
             and d["metadata"]["name"] == "hoard-provider")
    granted: dict[tuple[str, str], tuple[str, ...]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted[(group, resource)] = tuple(rule["verbs"])
    assert granted == RIGHTS
    assert role["metadata"]["namespace"] == Settings().kubernetes_namespace
    binding, = (d for d in documents() if d["kind"] == "RoleBinding"
                and d["metadata"]["name"] == "hoard-provider")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hoard-worker",
                                    "namespace": Settings().kubernetes_control_namespace}]


def test_every_container_runs_as_non_root() -> None:
    for doc in documents():
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "limits" in container["resources"]


def test_every_hoard_setting_the_manifests_give_exists() -> None:
    """A misspelt HOARD_* variable would be ignored silently: each must be a setting."""
    known = {f"HOARD_{name.upper()}" for name in Settings.model_fields}
    given = {env["name"] for doc in documents() if doc["kind"] in ("Deployment", "Job")
             for container in doc["spec"]["template"]["spec"]["containers"]
             for env in container.get("env", [])}
    hoard = {name for name in given if name.startswith("HOARD_")}
    assert hoard - {"HOARD_STORE_PASSWORD"} <= known  # that one only builds the URL
    assert {"HOARD_DATABASE_URL", "HOARD_KUBECONFIG", "HOARD_PROVIDER",
            "HOARD_KUBERNETES_NAMESPACE", "HOARD_WORKER_ID"} <= hoard


def test_every_image_has_a_dockerfile() -> None:
    for name, engine in ENGINES.items():
        image = engine.image("x")
        assert image.startswith(f"hoard/{name}:")
        dockerfile = (ROOT / "images" / name / "Dockerfile").read_text()
        assert "FROM debian:12" in dockerfile  # the local provider's Debian packages
        assert "USER 999:999" in dockerfile  # the pods' runAsUser
    assert (ROOT / "images" / "hoard" / "Dockerfile").is_file()
    postgresql = (ROOT / "images" / "postgresql" / "Dockerfile").read_text()
    assert "postgresql-15" in postgresql
    # Patroni 4: its Kubernetes DCS labels the leader as the read-write Service selects;
    # the very version and dependencies tests/test_kubernetes_patroni.py runs.
    assert "'patroni[psycopg3]==4.1.5'" in postgresql
    assert "-c /tmp/patroni-constraints.txt" in postgresql
    constraints = (ROOT / "scripts" / "patroni-image-constraints.txt").read_text()
    assert "patroni==4.1.5" in constraints.splitlines()
    assert "/opt/hoard/patroni-4.1.5" in (ROOT / "scripts" / "install-image-patroni.sh").read_text()
    mariadb = (ROOT / "images" / "mariadb" / "Dockerfile").read_text()
    assert "mariadb-backup" in mariadb and "galera-4" in mariadb
    assert "redis-sentinel" in (ROOT / "images" / "redis" / "Dockerfile").read_text()


def test_the_manifests_deploy_this_release() -> None:
    """Hoard's own image is this release's: an old tag would run workers whose
    workflows another release's cannot resume."""
    from hoard import __version__

    images = {container["image"] for doc in documents() if doc["kind"] in ("Deployment", "Job")
              for container in doc["spec"]["template"]["spec"]["containers"]
              if container["image"].startswith("hoard/hoard:")}
    assert images == {f"hoard/hoard:{__version__}"}


def test_the_database_pods_account_is_the_one_the_provider_renders() -> None:
    """deploy/kubernetes makes the database pods' account, Role and binding with
    the namespace; they are exactly what ``render.database_account`` says
    Patroni's Kubernetes DCS needs."""
    namespace = Settings().kubernetes_namespace
    wanted = render.database_account(namespace)
    found = [d for d in documents() if d["metadata"]["name"] == "hoard-database"]
    assert found == wanted
    for manifest in wanted:
        strictly_valid(manifest)
