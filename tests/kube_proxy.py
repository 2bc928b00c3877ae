"""Services for the stand-in kubelet (tests/kubelet.py): names, as the
cluster's DNS answers them, and ClusterIP Services forwarded to the pods
they select, as kube-proxy's userspace mode did.

- A headless Service's name (``<name>.<namespace>.svc``) resolves to its
  one selected pod's IP; its ports are the pod's.
- A ClusterIP Service gets an address of its own on the test bridge; a
  connection to one of its ports is forwarded to the port its ``targetPort``
  names on a ready pod it selects (the first by name), chosen when the
  connection is made, so a connection made after a failover reaches the new
  selection and one made before stays where it was.
- Names are written into one hosts file, rewritten in place (the same inode:
  it is bound over ``/etc/hosts`` in every pod and in Hoard's process);
  glibc reads it at each lookup."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kube_sandbox import Network


def selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def named_port(pod: dict[str, Any], target: str | int) -> int | None:
    if isinstance(target, int):
        return target
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port["name"] == target:
                return int(port["containerPort"])
    return None


@dataclass
class Proxy:
    """The Services' names and forwarders (see the module's docstring).
    ``pods``: the live pods with their IPs (name -> (pod, ip))."""

    network: Network
    hosts: Path
    namespace: str
    pods: Callable[[], dict[str, tuple[dict[str, Any], str]]]
    addresses: dict[str, str] = field(default_factory=dict)  # Service -> its ClusterIP
    _servers: dict[tuple[str, int], asyncio.AbstractServer] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _written: str = ""

    def __post_init__(self) -> None:
        self.hosts.write_text("127.0.0.1 localhost\n")
        self.hosts.chmod(0o644)
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def resolve(self, host: str) -> str | None:
        """The address a name resolves to now (for the test's own connections)."""
        for line in self._written.splitlines():
            address, *aliases = line.split()
            if host in aliases:
                return address
        return None

    @contextlib.contextmanager
    def names(self) -> Iterator[None]:
        """The test's own process resolves the cluster's names too, for the
        client libraries that resolve through Python (redis-py, PyMySQL); libpq
        resolves in C and is given ``hostaddr`` instead (``libpq_uri``)."""
        real = socket.getaddrinfo

        def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, str) and host.endswith(".svc"):
                address = self.resolve(host)
                if address is None:
                    raise socket.gaierror(socket.EAI_NONAME, f"{host}: no such name")
                host = address
            return real(host, *args, **kwargs)

        socket.getaddrinfo = lookup
        try:
            yield
        finally:
            socket.getaddrinfo = real

    def wait_resolvable(self, host: str, timeout: float = 10.0) -> str:
        """The address of a name that is to resolve (a Service just made is
        named at the stand-in's next pass)."""
        deadline = time.monotonic() + timeout
        while (address := self.resolve(host)) is None:
            assert time.monotonic() < deadline, f"{host} resolves to nothing"
            time.sleep(0.05)
        return address

    def libpq_uri(self, uri: str) -> str:
        """A PostgreSQL URI whose host is a cluster name, with the address the
        name has now as ``hostaddr`` (TLS still verifies the name)."""
        host = uri.split("@", 1)[1].split(":", 1)[0].split("/", 1)[0]
        address = self.wait_resolvable(host)
        return f"{uri}{'&' if '?' in uri else '?'}hostaddr={address}"

    def sync(self, services: dict[str, dict[str, Any]]) -> None:
        """Names and forwarders for ``services``, as they are now."""
        lines = ["127.0.0.1 localhost"]
        pods = self.pods()
        for name, service in sorted(services.items()):
            spec = service["spec"]
            fqdn = f"{name}.{self.namespace}.svc"
            if not spec.get("selector"):
                continue  # its endpoints are someone's own (Patroni's -config): no name
            if spec.get("clusterIP") == "None":
                chosen = [ip for pod, ip in pods.values() if selects(spec["selector"], pod)]
                if chosen:
                    lines.append(f"{chosen[0]} {fqdn}")
                continue
            if name not in self.addresses:
                self.addresses[name] = self.network.service_address(len(self.addresses))
            address = self.addresses[name]
            lines.append(f"{address} {fqdn}")
            for port in spec["ports"]:
                key = (address, int(port["port"]))
                if key not in self._servers:
                    self._servers[key] = asyncio.run_coroutine_threadsafe(
                        self._listen(key, service, port["targetPort"]), self._loop
                    ).result(10)
        text = "\n".join(lines) + "\n"
        if text != self._written:
            with open(self.hosts, "r+") as f:  # in place: the same inode stays bound
                f.write(text)
                f.truncate()
            self._written = text

    async def _listen(self, key: tuple[str, int], service: dict[str, Any],
                      target: str | int) -> asyncio.AbstractServer:
        selector = dict(service["spec"]["selector"])

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            chosen = sorted((name, ip, named_port(pod, target))
                            for name, (pod, ip) in self.pods().items()
                            if selects(selector, pod) and ready(pod))
            if not chosen or chosen[0][2] is None:
                writer.close()  # no endpoint: refused, as a Service with none is
                return
            _, ip, port = chosen[0]
            try:
                up_reader, up_writer = await asyncio.open_connection(ip, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(forward, *key)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers.values():
                server.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
