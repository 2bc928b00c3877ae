"""The versioned emulator's own contract (tests/kube_emulator.py), over HTTP as
any client sees it: what Patroni's leader lock and object caches rely on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.kube_support import NAMESPACE, MockApi, mock_api

ENDPOINTS = f"/api/v1/namespaces/{NAMESPACE}/endpoints"


@pytest.fixture()
def api() -> Iterator[MockApi]:
    with mock_api() as served:
        yield served


def _create(api: MockApi, name: str, labels: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(api.url + ENDPOINTS, timeout=5, json={
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels}})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _patch(api: MockApi, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.patch(f"{api.url}{ENDPOINTS}/{name}", json=body, timeout=5, headers={
        "Content-Type": "application/strategic-merge-patch+json"})


def _version(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_every_write_gets_a_newer_version_and_lists_say_the_latest(api: MockApi) -> None:
    first = _create(api, "a", {"app": "x"})
    second = _create(api, "b", {"app": "x"})
    assert _version(second) > _version(first)
    patched = _patch(api, "a", {"metadata": {"annotations": {"leader": "m1"}}}).json()
    assert _version(patched) > _version(second)
    listed = httpx.get(api.url + ENDPOINTS, timeout=5).json()
    assert int(listed["metadata"]["resourceVersion"]) == _version(patched)
    assert httpx.post(api.url + ENDPOINTS, timeout=5, json={
        "metadata": {"name": "a", "namespace": NAMESPACE}}).status_code == 409  # exists


def test_a_stale_version_is_refused_with_409_and_changes_nothing(api: MockApi) -> None:
    created = _create(api, "lock", {"app": "x"})
    taken = _patch(api, "lock", {"metadata": {"resourceVersion": created["metadata"][
        "resourceVersion"], "annotations": {"leader": "m1"}}})
    assert taken.status_code == 200, taken.text
    late = _patch(api, "lock", {"metadata": {"resourceVersion": created["metadata"][
        "resourceVersion"], "annotations": {"leader": "m2"}}})
    assert late.status_code == 409
    assert late.json()["code"] == 409
    stored = api.objects("endpoints")["lock"]
    assert stored["metadata"]["annotations"] == {"leader": "m1"}
    assert stored["metadata"]["resourceVersion"] == taken.json()["metadata"]["resourceVersion"]
    # A deletion's preconditions are held to the same rule.
    gone = httpx.request("DELETE", f"{api.url}{ENDPOINTS}/lock", timeout=5,
                         json={"preconditions": {"resourceVersion": "1"}})
    assert gone.status_code == 409
    assert "lock" in api.objects("endpoints")
    gone = httpx.request("DELETE", f"{api.url}{ENDPOINTS}/lock", timeout=5, json={
        "preconditions": {"resourceVersion": stored["metadata"]["resourceVersion"]}})
    assert gone.status_code == 200, gone.text
    assert api.objects("endpoints") == {}


def test_lists_and_watches_honour_label_selectors(api: MockApi) -> None:
    _create(api, "mine", {"app": "x", "cluster": "c1"})
    _create(api, "other", {"app": "x", "cluster": "c2"})
    _create(api, "unlabelled", {})

    def names(selector: str) -> set[str]:
        listed = httpx.get(api.url + ENDPOINTS, params={"labelSelector": selector},
                           timeout=5).json()
        return {item["metadata"]["name"] for item in listed["items"]}

    assert names("app=x,cluster=c1") == {"mine"}
    assert names("app=x,cluster!=c1") == {"other"}
    assert names("") == {"mine", "other", "unlabelled"}


def test_a_watch_sent_as_python_writes_it_streams_its_selection_and_ends_on_time(
        api: MockApi) -> None:
    """``watch=True`` (Patroni's client) is a watch; ``timeoutSeconds`` ends it;
    events of objects the selector leaves out are not sent; a deletion's event
    carries a version newer than the object's last."""
    kept = _create(api, "mine", {"cluster": "c1"})
    _create(api, "other", {"cluster": "c2"})
    events: list[dict[str, Any]] = []

    def watch() -> None:
        with httpx.stream("GET", api.url + ENDPOINTS, timeout=10, params={
                "watch": "True", "labelSelector": "cluster=c1", "timeoutSeconds": "2",
                "resourceVersion": kept["metadata"]["resourceVersion"]}) as stream:
            events.extend(json.loads(line) for line in stream.iter_lines() if line)

    began = time.monotonic()
    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)
    changed = _patch(api, "mine", {"metadata": {"annotations": {"leader": "m1"}}}).json()
    _patch(api, "other", {"metadata": {"annotations": {"leader": "m9"}}})
    assert httpx.delete(f"{api.url}{ENDPOINTS}/mine", timeout=5).status_code == 200
    watcher.join(10)
    assert not watcher.is_alive()
    assert 2 <= time.monotonic() - began < 5
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "mine"), ("MODIFIED", "mine"), ("DELETED", "mine")]
    assert _version(events[1]["object"]) == _version(changed)
    assert _version(events[2]["object"]) > _version(changed)
