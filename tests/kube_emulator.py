"""kmock's Kubernetes emulator (a fake API server, named as such: no real one
can run on these machines), with the parts of the API server's contract an
HA agent's leader lock stands on, which kmock 0.8 leaves out:

- **Resource versions.** Every write gives the object the next number of one
  counter (``metadata.resourceVersion``, a decimal string, as the API server's
  are), a deletion included, so a watcher can order what it sees; a list
  answers with the counter's current value.
- **Compare-and-set.** A patch naming a ``resourceVersion`` other than the
  stored one, or a deletion whose ``preconditions`` do, is refused with 409
  Conflict and changes nothing (Patroni takes and renews its leader lock so).
- **Label selectors** (``k=v`` and ``k!=v``, comma-joined) on lists and
  watches: a client sees only what it asked for, as from the API server.
- **Watches as clients send them**: ``watch=True``/``1`` as well as ``true``
  (kmock takes only the last), and ``timeoutSeconds`` ends the stream.

Still not the API server: patches are merged as JSON dicts (no strategic
merge keys), no controller runs (a StatefulSet makes no pod), a watch
replays the current objects as ADDED instead of the changes after its
``resourceVersion``, and names resolve nowhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering
from kmock._internal.k8s import KubernetesObjectConflictError

WRITES = (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE)


def selector(text: str | None) -> list[tuple[str, str, bool]]:
    """``a=b,c!=d`` as (key, value, equal) terms; a bare ``key`` (exists) is
    refused, as nothing here sends one."""
    terms = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), value.strip(), False))
        elif "=" in term:
            key, value = term.split("==" if "==" in term else "=", 1)
            terms.append((key.strip(), value.strip(), True))
        else:
            raise ValueError(f"label selector term {term!r} is not supported here")
    return terms


def selected(obj: Mapping[str, Any], terms: list[tuple[str, str, bool]]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all((labels.get(key) == value) == equal for key, value, equal in terms)


@attrs.define(kw_only=True)
class VersionedEmulator(kmock.KubernetesEmulator):
    """``kmock.KubernetesEmulator`` with resource versions, compare-and-set,
    label selectors and watches that end (the module's docstring)."""

    _revision: int = attrs.field(default=0, init=False)
    _writes: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Give ``obj`` the next resource version (for objects a test writes
        as a controller would)."""
        self._revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
        return obj

    def calls(self) -> list[rendering.Request]:
        """Every request served so far (for what a client was seen to call)."""
        return list(self._requests)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "GET" and raw_request.query.get("watch") in ("True", "1"):
            raw_request = raw_request.clone(
                rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.action not in WRITES:
            return await super()._handle(request)
        async with self._writes:  # check, stamp and write as one
            stored = None
            if request.name is not None:
                key = (request.resource, request.namespace, request.name)
                if key in self._objects and not self._objects[key].deleted:
                    stored = self._objects[key]
            if request.action == enums.action.UPDATE:
                wanted = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
                self._check(stored, wanted)
            if request.action == enums.action.DELETE:
                wanted = ((request.data or {}).get("preconditions") or {}).get("resourceVersion")
                self._check(stored, wanted)
                if stored is not None:
                    stored.patch(self.stamp({}))  # its DELETED event carries a new version
            elif isinstance(request.data, dict):
                self.stamp(request.data)
            return await super()._handle(request)

    @staticmethod
    def _check(stored: Any, wanted: str | None) -> None:
        if stored is None or wanted is None:
            return
        current = (stored.get("metadata") or {}).get("resourceVersion")
        if str(wanted) != current:
            raise KubernetesObjectConflictError(
                f"the object has been modified: resourceVersion {wanted} asked, "
                f"{current} stored")

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        answer: dict[str, Any] = await super()._serve_list(request)  # type: ignore[assignment]
        terms = selector(request.params.get("labelSelector"))
        answer["items"] = [obj for obj in answer["items"] if selected(obj, terms)]
        answer["metadata"] = {"resourceVersion": str(self._revision)}
        return answer

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        terms = selector(request.params.get("labelSelector"))
        limit = request.params.get("timeoutSeconds")
        deadline = time.monotonic() + float(limit) if limit else None
        events = super()._serve_watch(request)
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                try:
                    event = await asyncio.wait_for(anext(events), left)
                except (StopAsyncIteration, TimeoutError):
                    return
                if isinstance(event, dict) and not selected(event.get("object") or {}, terms):
                    continue
                yield event
        finally:
            await events.aclose()
