"""Where a new node goes: spread a cluster's nodes over zones, then hosts.

Anti-affinity is a preference, not a refusal: with fewer zones (or hosts) than
nodes, nodes share, as evenly as they can, and the API shows where each landed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    address: str
    zone: str


def choose_host(candidates: list[Host], siblings: Iterable[Host],
                load: Counter[str] | None = None) -> Host:
    """The candidate sharing the fewest zones, then hosts, with the cluster's other
    nodes (``siblings``); ties go to the least loaded host, then the first listed."""
    if not candidates:
        raise ValueError("no host to place a node on")
    siblings = list(siblings)
    zones = Counter(h.zone for h in siblings)
    hosts = Counter(h.address for h in siblings)
    load = load or Counter()
    return min(candidates, key=lambda h: (zones[h.zone], hosts[h.address], load[h.address]))


def parse_hosts(text: str) -> list[Host]:
    """``"127.0.0.1@zone-a,127.0.0.2@zone-b"`` (zone optional, default "local")."""
    hosts = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        address, _, zone = item.partition("@")
        hosts.append(Host(address.strip(), zone.strip() or "local"))
    if not hosts:
        raise ValueError("list at least one host")
    if len({h.address for h in hosts}) != len(hosts):
        raise ValueError(f"a host is listed twice in {text!r}")
    return hosts
