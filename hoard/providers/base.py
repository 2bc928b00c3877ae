"""The Provider seam: place a node, give it storage and limits, run its process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from hoard.domain.catalog import Size
from hoard.domain.nodes import NodeRunner, ProcessSpec


@dataclass(frozen=True)
class Placement:
    """Where a node landed: the address clients use, and the failure domain."""

    host: str
    port: int
    zone: str


class Provider(ABC):
    name: str

    @abstractmethod
    def place(self, node_id: str, taken_ports: set[int], storage_gb: int) -> Placement:
        """Reserve an address and storage for a node. Idempotent per node id."""

    @abstractmethod
    def grow_storage(self, node_id: str, storage_gb: int) -> bool:
        """Grow the node's storage. False if the node must be stopped first (then
        nothing was done)."""

    @abstractmethod
    def runner(self, node_id: str) -> NodeRunner:
        """Files and commands beside the node's data."""

    @abstractmethod
    def apply_limits(self, node_id: str, size: Size, storage_gb: int) -> dict[str, str]:
        """Set CPU, memory and storage limits; say for each whether it is enforced."""

    @abstractmethod
    def start(self, node_id: str, spec: ProcessSpec) -> bool:
        """Run the node's process unless it already runs; True if it was started."""

    @abstractmethod
    def is_running(self, node_id: str) -> bool: ...

    @abstractmethod
    def pid(self, node_id: str) -> int | None:
        """The server's process id where that means something (for operators)."""

    @abstractmethod
    def stop(self, node_id: str) -> None:
        """Stop the node's process (graceful, then forced). Idempotent."""

    @abstractmethod
    def destroy(self, node_id: str) -> None:
        """Stop the node and remove everything it had. Idempotent."""

    @abstractmethod
    def node_ids(self) -> set[str]:
        """Every node this provider holds anything for (to find debris)."""
