"""The API server's exec protocol, over an open websocket: what each frame's
first byte means, how stdin is sent and closed, and how the command's end is
told.

Channels (the first byte of every binary message): 0 stdin, 1 stdout,
2 stderr, 3 the status (a ``metav1.Status`` as JSON, sent once, when the
command has ended: Success, or Failure with reason ``NonZeroExitCode`` and
the code in ``details.causes[reason=ExitCode]``; any other Failure means the
command did not run), 4 terminal resize (unused: no terminal). In
``v5.channel.k8s.io`` a message ``255, 0`` closes stdin, so a tool reading it
sees its end; ``v4.channel.k8s.io`` (API servers before 1.30) has no such
message, so a command that needs its stdin closed cannot run over it. The
kubelet first sends a channel's byte with no data, to say the command is
connected: a message without data means nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol

from httpx2.websockets import HTTPXWSException

STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
PROTOCOLS = [V5, V4]
FRAME = 32 * 1024  # stdin is sent in messages of at most this (the kubelet's own buffer)


class ExecFailed(RuntimeError):
    """The command could not be run in the pod (no such container, the program
    missing, the connection cut before its status came): not its exit code."""


class WebSocket(Protocol):
    """What is used of a websocket session (httpx2's)."""

    subprotocol: str | None

    def send_bytes(self, data: bytes) -> None: ...

    def receive_bytes(self, timeout: float | None = None) -> bytes: ...


def exit_code(message: bytes) -> int:
    """The command's exit code from its status message; ``ExecFailed`` when the
    status says it did not run at all."""
    try:
        status: dict[str, Any] = json.loads(message or b"{}")
    except ValueError as exc:
        raise ExecFailed(f"exec: an unreadable status {message[:200]!r}") from exc
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    break
        return -1
    raise ExecFailed(f"exec: {status.get('message') or status.get('reason') or status}")


class Channels:
    """One command's streams over its websocket."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.closable = ws.subprotocol == V5

    def send(self, data: bytes) -> None:
        """Bytes to the command's stdin (blocks while the connection is full:
        what is sent is never held here)."""
        view = memoryview(data)
        for start in range(0, len(view), FRAME):
            self.ws.send_bytes(bytes((STDIN,)) + view[start:start + FRAME])

    def close_stdin(self) -> None:
        if not self.closable:
            raise ExecFailed(f"exec: the API server speaks {self.ws.subprotocol or 'an old'} "
                             f"protocol, which cannot close a command's stdin ({V5}, from "
                             "Kubernetes 1.30, can)")
        self.ws.send_bytes(bytes((CLOSE, STDIN)))

    def frames(self, timeout: float | None = None) -> Iterator[tuple[int, bytes]]:
        """(channel, payload) as they come, ending after the status; a connection
        that ends before it raises ``ExecFailed``; ``TimeoutError`` when nothing
        came for ``timeout`` seconds."""
        while True:
            try:
                message = self.ws.receive_bytes(timeout=timeout)
            except HTTPXWSException as exc:
                raise ExecFailed("exec: the connection ended before the command's "
                                 f"status came ({type(exc).__name__})") from exc
            if len(message) < 2:
                continue  # the kubelet's "connected" (a channel's byte, no data)
            yield message[0], message[1:]
            if message[0] == STATUS:
                return
