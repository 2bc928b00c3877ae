"""Access to the Kubernetes API: the few calls the provider makes, on lightkube.

Every answer the provider must tell apart is turned into one of three here,
whatever the HTTP library said: an object that is already there (409 on
create: fine, converge it with a patch), one that is gone (404 on get or
delete: fine for a delete), and a watch whose version is too old (410:
list again). Manifests stay plain dicts, the ones ``render`` makes and tests
check against the official schemas; lightkube's typed resources only carry
them over the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx2
from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import (
    Endpoints,
    PersistentVolumeClaim,
    Pod,
    Secret,
    Service,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import CascadeType, PatchType

from hoard.providers.kubernetes.channels import PROTOCOLS, Channels

Manifest = dict[str, Any]
IN_CLUSTER = "in-cluster"

# The kinds the provider makes, by manifest kind; the order a delete goes in
# (what runs first, then what it used).
KINDS: dict[str, Any] = {  # lightkube resource classes
    "StatefulSet": StatefulSet,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
    "NetworkPolicy": NetworkPolicy,
    "Secret": Secret,
    "PersistentVolumeClaim": PersistentVolumeClaim,
}
# Pods are their StatefulSets'; Endpoints are Patroni's (its Kubernetes DCS), found
# by its labels and deleted with the cluster (``forget_dcs``).
RESOURCES: dict[str, Any] = {**KINDS, "Pod": Pod, "Endpoints": Endpoints}
# Every call this module makes, as RBAC names it (API group, resource): the
# rights deploy/kubernetes grants Hoard's workers, and no more (a test holds
# the two equal).
WRITES = ("get", "list", "create", "patch", "delete")
RIGHTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "statefulsets"): WRITES,
    ("", "services"): WRITES,
    ("", "secrets"): WRITES,
    ("", "persistentvolumeclaims"): WRITES,
    ("policy", "poddisruptionbudgets"): WRITES,
    ("networking.k8s.io", "networkpolicies"): WRITES,
    ("", "pods"): ("get", "list", "watch", "patch", "delete"),  # patch: role labels
    ("", "endpoints"): ("list", "delete"),  # Patroni's, when its cluster is deleted
    ("", "pods/log"): ("get",),
    # exec is a websocket upgrade of a GET; API servers from 1.35 also ask for
    # "create" on it (as its POST form always did).
    ("", "pods/exec"): ("get", "create"),
}
EXEC_MESSAGE = 1 << 20  # the largest message taken from an exec's stream
EXEC_QUEUE = 16  # messages held before the stream waits for its reader: bounded memory


class KubeError(RuntimeError):
    """An answer of the API server the provider does not expect: its code and why."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"Kubernetes API: {code} {reason}: {message}")
        self.code, self.reason = code, reason


def _problem(exc: Exception) -> KubeError:
    """One error for lightkube's ``ApiError`` and a bare HTTP status error (an API
    server behind a proxy may answer a Status with another content type)."""
    if isinstance(exc, ApiError):
        return KubeError(exc.status.code or exc.response.status_code,
                         exc.status.reason or "", exc.status.message or "")
    if isinstance(exc, httpx2.HTTPStatusError):
        try:
            body = exc.response.json()
        except ValueError:
            body = {}
        return KubeError(exc.response.status_code, str(body.get("reason", "")),
                         str(body.get("message", exc.response.text[:200])))
    raise exc


def _code(exc: Exception) -> int | None:
    try:
        return _problem(exc).code
    except Exception:
        return None


def selector(labels: dict[str, str]) -> str:
    """A label selector matching every one of ``labels``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _selecting(labels: dict[str, str]) -> dict[str, Any]:
    return dict(labels)  # lightkube's selectors also take operators: a wider type


def config(kubeconfig: str) -> KubeConfig:
    """``HOARD_KUBECONFIG``: a kubeconfig file, or ``in-cluster`` for the pod's
    service account (Hoard deployed on the cluster it provisions on)."""
    if kubeconfig == IN_CLUSTER:
        return KubeConfig.from_service_account()
    return KubeConfig.from_file(Path(kubeconfig))


@dataclass
class Pods:
    """What a list of pods said, and the version to watch from."""

    items: list[Pod]
    version: str | None


class Kube:
    """The provider's calls, in one namespace."""

    def __init__(self, kubeconfig: KubeConfig, namespace: str, timeout: float = 30.0) -> None:
        self.namespace, self.timeout = namespace, timeout
        self.client = Client(kubeconfig, namespace=namespace, timeout=httpx2.Timeout(timeout),
                             field_manager="hoard")

    def _call(self, do: Callable[[], Any]) -> Any:
        try:
            return do()
        except (ApiError, httpx2.HTTPStatusError) as exc:
            raise _problem(exc) from exc

    def get(self, kind: str, name: str) -> Any | None:
        """The object, or None if there is none."""
        try:
            return self.client.get(RESOURCES[kind], name)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _code(exc) == 404:
                return None
            raise _problem(exc) from exc

    def ensure(self, manifest: Manifest, converge: tuple[str, ...] | None = None) -> bool:
        """Make the object exist as rendered: create it, or (409: it is there) patch
        it to the manifest (only its ``converge`` fields, if given: a volume's size
        only grows, through ``grow``). True if it was created."""
        obj = from_dict(manifest)
        try:
            self.client.create(obj)
            return True
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _code(exc) != 409:
                raise _problem(exc) from exc
        if converge == ():
            return False  # there: left as it is
        self.patch(manifest["kind"], manifest["metadata"]["name"],
                   {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")
                    and (converge is None or k in converge)})
        return False

    def patch(self, kind: str, name: str, patch: Manifest) -> None:
        """A JSON merge patch (RFC 7386): what it names is set, the rest stays."""
        self._call(lambda: self.client.patch(RESOURCES[kind], name, patch,
                                             patch_type=PatchType.MERGE))

    def delete(self, kind: str, name: str) -> bool:
        """Delete the object; False if it was gone already (404: fine)."""
        try:
            self.client.delete(RESOURCES[kind], name,
                               cascade=CascadeType.BACKGROUND)
            return True
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _code(exc) == 404:
                return False
            raise _problem(exc) from exc

    def kill_pod(self, name: str) -> None:
        """Delete a pod at once (no grace period), as a lost host would lose it."""
        try:
            self.client.delete(Pod, name, grace_period=0)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _code(exc) != 404:
                raise _problem(exc) from exc

    def names(self, kind: str, labels: dict[str, str]) -> list[str]:
        """Names of the objects of ``kind`` carrying every one of ``labels``."""
        return sorted(item.metadata.name for item in self.labelled(kind, labels))

    def labelled(self, kind: str, labels: dict[str, str]) -> list[Any]:
        """The objects of ``kind`` carrying every one of ``labels``. The answer is
        checked against the selector too: what is deleted by label must carry the
        label, whatever a server (or a proxy before it) made of the selector."""
        found = self.client.list(RESOURCES[kind], labels=_selecting(labels))
        return [item for item in self._call(lambda: list(found))
                if labels.items() <= (item.metadata.labels or {}).items()]

    def pods(self, labels: dict[str, str]) -> Pods:
        listed = self.client.list(RESOURCES["Pod"], labels=_selecting(labels))
        items = self._call(lambda: list(listed))
        try:
            version = listed.resourceVersion
        except Exception:
            version = None
        return Pods(items, version)

    def watch_pods(self, labels: dict[str, str], version: str | None,
                   timeout: float) -> Iterator[Pod]:
        """Pods as they change after ``version``, until the watch ends: the server
        ends it after ``timeout`` seconds, and a silent one ends when nothing came
        for that long (lightkube's own watch re-opens for ever; a wait needs one
        that ends at its deadline). A 410 (the version is too old), as an answer
        or as an ERROR event, raises ``KubeError`` 410: list again."""
        requests = self.client._client  # lightkube's request builder, with its auth
        built = requests.prepare_request(
            "list", res=Pod, namespace=self.namespace, watch=True,
            params={"labelSelector": selector(labels), "resourceVersion": version,
                    "timeoutSeconds": max(1, int(timeout))})
        built.timeout = httpx2.Timeout(self.timeout, read=max(1.0, timeout))
        response = requests.send(requests.build_adapter_request(built), stream=True)
        try:
            if response.is_error:
                response.read()
                response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(int(status.get("code") or 500), str(status.get("reason", "")),
                                    str(status.get("message", "")))
                yield cast(Pod, Pod.from_dict(event["object"]))
        except httpx2.ReadTimeout:
            return
        except httpx2.HTTPStatusError as exc:
            raise _problem(exc) from exc
        finally:
            response.close()

    def log_tail(self, pod: str, container: str, max_bytes: int) -> str:
        try:
            text = "".join(self.client.log(pod, container=container, tail_lines=200))
        except (ApiError, httpx2.HTTPStatusError):
            return ""  # no pod, or it never started: nothing it said
        return text[-max_bytes:]

    @contextmanager
    def exec(self, pod: str, container: str, argv: list[str],
             stdin: bool) -> Iterator[Channels]:
        """Run ``argv`` in the pod's container over the exec subresource (a
        websocket on lightkube's own connection, credentials and TLS); stdout and
        stderr always, stdin only when asked (a command without it reads
        nothing). An API server's refusal (no pod, no rights) is a ``KubeError``."""
        from httpx2.websockets import WebSocketUpgradeError

        requests = self.client._client  # lightkube's request builder, with its auth
        built = requests.prepare_request(
            "exec", res=Pod, name=pod, namespace=self.namespace,
            params={"command": list(argv), "container": container, "stdin": stdin,
                    "stdout": True, "stderr": True})
        try:
            with requests._client.websocket(
                    built.url, subprotocols=list(PROTOCOLS), params=built.params,
                    max_message_size_bytes=EXEC_MESSAGE, queue_size=EXEC_QUEUE) as ws:
                yield Channels(ws)
        except WebSocketUpgradeError as exc:
            answer = exc.response
            try:
                text = answer.read().decode(errors="replace")
                body = json.loads(text)
            except Exception:  # a body already closed, or not a Status
                text, body = "", {}
            body = body if isinstance(body, dict) else {}
            raise KubeError(answer.status_code, str(body.get("reason", "")),
                            str(body.get("message", text[:200]))) from exc
