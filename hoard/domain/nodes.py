"""The contract between an engine and a provider: the process an engine wants
run, and the way it reaches a node's files and tools wherever the node lives."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol


@dataclass(frozen=True)
class ProcessSpec:
    """The one long-running process of a node."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0


class NodeRunner(Protocol):
    """Carries out an engine's file writes and commands beside the node's data.

    Paths are relative to the node's volume root.
    """

    def write_file(self, path: PurePosixPath, content: bytes, mode: int = 0o600) -> None: ...

    def exists(self, path: PurePosixPath) -> bool: ...

    def remove_tree(self, path: PurePosixPath) -> None:
        """Remove a file or a whole directory; missing is fine."""
        ...

    def rename(self, src: PurePosixPath, dst: PurePosixPath) -> None: ...

    def run(self, argv: list[str], timeout: float = 300.0,
            env: dict[str, str] | None = None) -> str:
        """Run a tool as the database OS user; return its output, raise on failure.
        Secrets go in ``env``, never in argv."""
        ...

    def stream(self, argv: list[str], env: dict[str, str] | None = None) -> Iterator[bytes]:
        """Run a tool and yield its stdout in chunks (bounded memory); raise after
        the last chunk if it failed, so a consumer never mistakes a cut-short
        stream for a whole one."""
        ...

    def feed(self, argv: list[str], chunks: Iterable[bytes],
             env: dict[str, str] | None = None, timeout: float = 3600.0) -> str:
        """Run a tool with ``chunks`` streamed to its stdin; return its output."""
        ...

    def list_dir(self, path: PurePosixPath) -> list[str]:
        """Names in a directory, sorted; empty if it does not exist."""
        ...

    def read_stream(self, path: PurePosixPath) -> Iterator[bytes]:
        """A file's bytes in chunks."""
        ...

    def abspath(self, path: PurePosixPath) -> str:
        """Where ``path`` is as the node's process sees it."""
        ...
