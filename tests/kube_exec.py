"""A stand-in for the kubelet's exec, speaking the API server's exec protocol;
runs the command in a local directory that plays the pod's volume.

No Kubernetes API server (nor kubelet) can run on the machines these tests run
on, and kmock's emulator does not answer the ``pods/{name}/exec`` subresource
(it speaks no websockets). This answers exactly that URL, in front of the
emulator on the same loopback server (every other request goes to kmock):
the websocket upgrade with ``v5.channel.k8s.io`` or ``v4.channel.k8s.io``,
binary messages whose first byte is the channel (0 stdin, 1 stdout, 2
stderr, 3 the status as a ``metav1.Status``, ``255, 0`` closing stdin in v5;
first, the kubelet's empty message on stdout saying the command is connected),
and the refusals an API server makes (404 for no pod, 400 for a container the
pod does not have or a pod not running). The command runs as a local process:
the node's volume is a temporary directory, which the tests' node
declarations mount at its own path, so paths in argv need no mapping. Every
argv it was asked to run is kept, for tests to check that no secret was in
one. A pod may be given an OS account (``users``): its commands then run as
that account, as a kubelet runs them as the container's user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web

EXEC_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/exec$")
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, CLOSE = 0, 1, 2, 3, 255
CHUNK = 32 * 1024


@dataclass
class Call:
    """One exec the stand-in was asked for."""

    pod: str
    container: str
    argv: list[str]
    stdin: bool


@dataclass
class StandInExec:
    """The exec endpoint (see the module's docstring). ``protocols``: those it
    accepts, best first (an old API server's: v4 alone)."""

    pods: Callable[[], dict[str, dict[str, Any]]]  # the emulator's pods, by name
    protocols: tuple[str, ...] = (V5, V4)
    calls: list[Call] = field(default_factory=list)
    users: dict[str, tuple[int, int]] = field(default_factory=dict)  # pod -> (uid, gid)
    # The argv prefix that runs a command inside a pod's sandbox, as its account
    # (the stand-in kubelet's, tests/kubelet.py), or None for a pod it runs nothing of.
    enter: Callable[[str], list[str] | None] | None = None

    def front(self, kmock_handler: Callable[[Any], Awaitable[Any]]) -> Callable[
            [aiohttp.web.BaseRequest], Awaitable[aiohttp.web.StreamResponse]]:
        """A raw aiohttp handler: exec here, everything else to the emulator."""
        async def handle(request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
            found = EXEC_PATH.match(request.path)
            if found is None:
                return await kmock_handler(request)
            return await self.exec(request, found["pod"])
        return handle

    def argvs(self) -> list[list[str]]:
        return [call.argv for call in self.calls]

    async def exec(self, request: aiohttp.web.BaseRequest,
                   pod_name: str) -> aiohttp.web.StreamResponse:
        query = request.query
        argv = query.getall("command", [])
        container = query.get("container", "")
        stdin = query.get("stdin") == "true"
        pod = self.pods().get(pod_name)
        if pod is None:
            return _status(404, "NotFound", f'pods "{pod_name}" not found')
        names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        if container not in names:
            return _status(400, "BadRequest",
                           f"container {container} is not valid for pod {pod_name}")
        if (pod.get("status") or {}).get("phase") != "Running":
            return _status(400, "BadRequest",
                           f"pod {pod_name} is not running: cannot exec into a container")
        if not argv:
            return _status(400, "BadRequest", "you must specify at least 1 command")
        prefix = self.enter(pod_name) if self.enter is not None else None
        if self.enter is not None and prefix is None:  # its containers have ended
            return _status(400, "BadRequest", f"container {container} is not running "
                           f"in pod {pod_name}: unable to upgrade connection")
        self.calls.append(Call(pod_name, container, list(argv), stdin))
        ws = aiohttp.web.WebSocketResponse(protocols=self.protocols, max_msg_size=0)
        await ws.prepare(request)
        # A client that goes away cancels this handler; the command runs on to its
        # end regardless (it sees the end of its stdin), as it would in a pod.
        await asyncio.shield(asyncio.ensure_future(_run(ws, argv, stdin,
                                                        self.users.get(pod_name), prefix)))
        return ws


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
         "reason": reason, "message": message}, status=code)


async def _run(ws: aiohttp.web.WebSocketResponse, argv: list[str], stdin: bool,
               user: tuple[int, int] | None = None, prefix: list[str] | None = None) -> None:
    """Run ``argv`` (as ``user``'s uid and gid, when given; after ``prefix``,
    which enters the pod, when given) with its streams on the websocket's
    channels; its status last."""
    v5 = ws.ws_protocol == V5
    account: dict[str, Any] = {} if user is None else {
        "user": user[0], "group": user[1], "extra_groups": []}
    try:
        proc = await asyncio.create_subprocess_exec(
            *(prefix or []), *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            **account)
    except OSError as exc:  # as a runtime says a program it cannot start
        await _send_status(ws, {"status": "Failure", "reason": "InternalError",
                                "message": f"exec: {exc}"})
        await ws.close()
        return

    async def pump(stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(CHUNK):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(bytes((channel,)) + chunk)

    async def feed() -> None:
        assert proc.stdin is not None
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                    continue
                data: bytes = message.data
                if data[0] == STDIN:
                    with contextlib.suppress(ConnectionError):
                        proc.stdin.write(data[1:])
                        await proc.stdin.drain()
                elif v5 and data[0] == CLOSE and data[1:2] == bytes((STDIN,)):
                    break
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.close()  # closed, or the client went: the command sees its end

    assert proc.stdout is not None and proc.stderr is not None
    # As the kubelet does: an empty message on stdout says the command is connected.
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes((STDOUT,)))
    feeding = asyncio.ensure_future(feed()) if stdin else None
    try:
        await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        code = await proc.wait()
    finally:  # the server stops (a test's end) with the command still running: end it
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        proc._transport.close()  # type: ignore[attr-defined]  # its pipes, before the loop goes
    if code == 0:
        status: dict[str, Any] = {"status": "Success"}
    else:
        status = {"status": "Failure", "reason": "NonZeroExitCode",
                  "message": f"command terminated with non-zero exit code: {code}",
                  "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    await _send_status(ws, status)
    await ws.close()
    if feeding is not None:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeding


async def _send_status(ws: aiohttp.web.WebSocketResponse, status: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, **status}
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes((STATUS,)) + json.dumps(body).encode())
