"""Where a replicated cluster's HA machinery keeps its state: the provider's
answer (``Provider.dcs``), which an engine turns into its machinery's settings.

The local provider runs Hoard's etcd (``EtcdDcs``); the Kubernetes provider
offers the API server itself (``KubernetesDcs``: Patroni keeps its leader lock
and configuration in Endpoints of the cluster's namespace and labels its pods'
roles). An engine never asks which provider it runs on, only which DCS it got.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EtcdDcs:
    """An etcd cluster's client URL; members are named by their node ids."""

    url: str

    def member_name(self, node_id: str) -> str:
        return node_id

    def node_id(self, member_name: str) -> str:
        return member_name


@dataclass(frozen=True)
class KubernetesDcs:
    """The API server as the DCS, in ``namespace``. The machinery finds its own
    members by ``labels`` plus ``scope_label`` = the cluster's id (so it sees only
    its cluster's pods and objects); it writes each member's role in
    ``role_label`` (what the cluster's endpoint Services select). A member is
    its pod, so its name is the pod's (``member_format`` with the node id);
    ``pod_ip`` is what the container's environment expands to the pod's own
    address (Kubernetes' ``$(VAR)`` over a variable the provider sets from the
    downward API)."""

    namespace: str
    labels: tuple[tuple[str, str], ...]
    scope_label: str
    role_label: str
    leader_label_value: str = "primary"
    follower_label_value: str = "replica"
    member_format: str = "{node_id}"
    pod_ip: str = "$(POD_IP)"

    def member_name(self, node_id: str) -> str:
        return self.member_format.format(node_id=node_id)

    def node_id(self, member_name: str) -> str:
        """The node id a member name stands for (the name itself if it does not
        follow ``member_format``: a member Hoard did not name)."""
        head, _, tail = self.member_format.partition("{node_id}")
        if member_name.startswith(head) and member_name.endswith(tail) and len(member_name) > len(
                head) + len(tail):
            return member_name[len(head):len(member_name) - len(tail)]
        return member_name


Dcs = EtcdDcs | KubernetesDcs
