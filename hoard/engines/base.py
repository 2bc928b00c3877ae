"""The Engine seam: how to bootstrap, configure, run, check and connect to one engine.

An engine never touches a machine directly. It describes files and commands,
and a provider's :class:`NodeRunner` carries them out wherever the node lives
(a local directory and a subprocess, or a pod volume and an exec).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from hoard.domain.catalog import Size
from hoard.domain.nodes import NodeRunner, ProcessSpec


@dataclass(frozen=True)
class Parameter:
    """One engine parameter a configuration may set."""

    name: str
    type: str  # "integer" | "string" | "boolean" | "enum"
    dynamic: bool
    description: str
    minimum: int | None = None
    maximum: int | None = None
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


@dataclass(frozen=True)
class NodeContext:
    """What an engine knows about one node: its identity, size and secrets."""

    node_id: str
    version: str
    size: Size
    host: str
    port: int
    service: Credentials  # Hoard's own management account
    admin: Credentials  # the tenant's account


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class Engine(ABC):
    """One database engine. Subclasses live one per module in this package."""

    name: str
    display_name: str
    default_port: int

    @abstractmethod
    def versions(self) -> list[str]:
        """Versions that can run on this host, newest first."""

    @abstractmethod
    def parameters(self) -> list[Parameter]:
        """Parameters a configuration may set."""

    @abstractmethod
    def bootstrap(self, ctx: NodeContext, runner: NodeRunner) -> None:
        """Create the node's data files. Idempotent: a finished bootstrap is kept,
        a half-finished one is thrown away and redone."""

    @abstractmethod
    def configure(
        self, ctx: NodeContext, runner: NodeRunner, tls_cert: bytes, tls_key: bytes
    ) -> None:
        """Write configuration and TLS files. Idempotent."""

    @abstractmethod
    def process(self, ctx: NodeContext, runner: NodeRunner) -> ProcessSpec:
        """The server process to run for this node."""

    @abstractmethod
    def health(self, ctx: NodeContext, ca_file: str, timeout: float = 3.0) -> Health:
        """Check the node over the engine's own protocol, as Hoard's service account."""

    @abstractmethod
    def initialize(self, ctx: NodeContext, ca_file: str) -> None:
        """Create the tenant's admin account and default database. Idempotent."""

    @abstractmethod
    def connection_uri(self, host: str, port: int, creds: Credentials, ca_file: str) -> str:
        """A URI the engine's own client accepts as-is, TLS verified against ``ca_file``."""

    @abstractmethod
    def client_argv(self, uri: str) -> list[str]:
        """The interactive client command for ``hoard connect``."""
