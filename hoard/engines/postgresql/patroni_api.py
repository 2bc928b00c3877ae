"""Patroni's REST API on a cluster's members, as Hoard asks it: TLS against
Hoard's CA (or the CA on a node's volume), the service account on the calls
that change anything, and Patroni's view of the cluster with its members named
by node id."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from hoard.domain.dcs import Dcs
from hoard.domain.nodes import NodeRunner
from hoard.engines.base import TLS_CA, Credentials, Member, Topology

API = "patroni"  # the member's extra port: Patroni's REST API
TIMEOUT = httpx.Timeout(3.0, connect=1.0)
LEADER_ROLES = ("leader", "master", "primary")


def ca_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def node_context(runner: NodeRunner) -> ssl.SSLContext:
    """Trust the CA certificate on the node's volume, for calls made where Hoard's
    CA file is not at hand."""
    return ssl.create_default_context(cadata=b"".join(runner.read_stream(TLS_CA)).decode())


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def contains(current: Any, wanted: Any) -> bool:
    """Whether ``current`` already holds every value of ``wanted`` (nested dicts)."""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(
            k in current and contains(current[k], v) for k, v in wanted.items())
    return bool(current == wanted)


class Api:
    """Patroni's REST API on a cluster's members."""

    def __init__(self, verify: ssl.SSLContext, auth: Credentials | None = None) -> None:
        self.verify = verify
        self.auth = (auth.user, auth.password) if auth else None

    @staticmethod
    def url(member: Member, path: str) -> str:
        return f"https://{member.host}:{member.ports[API]}{path}"

    def call(self, method: str, url: str, body: Any = None,
             timeout: httpx.Timeout | float = TIMEOUT) -> httpx.Response:
        with httpx.Client(verify=self.verify, timeout=timeout) as client:
            return client.request(method, url, json=body,
                                  auth=self.auth if method != "GET" else None)

    def cluster(self, topo: Topology) -> dict[str, Any] | None:
        """Patroni's view of the cluster (GET /cluster), from the first member that
        answers, its members named by node id; None if none answers."""
        for member in topo.members:
            try:
                answer = self.call("GET", self.url(member, "/cluster"))
                if answer.status_code == 200:
                    view = dict(answer.json())
                    dcs = dcs_of(topo)
                    view["members"] = [{**m, "name": dcs.node_id(str(m.get("name", "")))}
                                       for m in view.get("members", [])]
                    return view
            except (httpx.HTTPError, ValueError):
                continue
        return None


def dcs_of(topo: Topology) -> Dcs:
    if topo.dcs is None:
        raise ValueError(f"cluster {topo.cluster_id}: Patroni needs a DCS, and none was given")
    return topo.dcs


def leader_of(view: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((m for m in view.get("members", []) if m.get("role") in LEADER_ROLES), None)
