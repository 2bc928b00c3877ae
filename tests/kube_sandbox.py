"""A pod's sandbox on this machine, as a container runtime would make it: a
network namespace with an address of its own on a test bridge, and a mount
namespace in which the pod's volumes are at their mount paths.

Part of the stand-in for the kubelet (tests/kubelet.py, named as such: no
kubelet can run on these machines). What a pod sees:

- its own network: loopback and ``eth0`` with the pod's IP on a bridge in the
  host's namespace (the bridge holds the network's first address, where the
  emulator and the Services' addresses are);
- its claim's directory at the data volume's mount path, an emptyDir of its
  own at ``/tmp`` and ``/run`` (so pods on one machine share no socket or
  scratch file), and the stand-in's ``/etc/hosts`` (the cluster's names, as
  its DNS would answer them) and ``/etc/passwd`` and ``/etc/group`` (the
  image's account, uid 999);
- the host's root filesystem otherwise: the same Debian packages the images
  are built from. ``overlays`` bind a file of the host over a path of the
  image (Patroni 4.1, installed by ``make setup``, at the image's
  ``/usr/bin/patroni``).

Every process of the pod runs in both namespaces as uid and gid 999
(``setpriv``), as the pod's security context asks; a pod's processes are
found by their mount namespace, so a pod deleted ends every process in it,
as a runtime ends a container's cgroup."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

UID = 999
NETNS_DIR = Path("/run/netns")


def sh(*argv: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[-300:]}")


@dataclass
class Network:
    """A bridge and a /24 of private addresses: the host is ``.1``, pods count up
    from ``.2``, Services' addresses count down from ``.254``."""

    bridge: str
    net: ipaddress.IPv4Network

    @classmethod
    def make(cls, seed: str) -> Network:
        digest = hashlib.sha256(seed.encode()).digest()
        net = ipaddress.IPv4Network(f"10.{200 + digest[0] % 50}.{digest[1]}.0/24")
        network = cls("hk" + digest.hex()[:10], net)
        sh("ip", "link", "add", network.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{network.gateway}/24", "dev", network.bridge)
        sh("ip", "link", "set", network.bridge, "up")
        return network

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    def pod_address(self, n: int) -> str:
        assert 2 <= n < 200, "the test network is out of pod addresses"
        return str(self.net.network_address + n)

    def service_address(self, n: int) -> str:
        assert 0 <= n < 50, "the test network is out of Service addresses"
        address = str(self.net.network_address + 254 - n)
        sh("ip", "addr", "add", f"{address}/32", "dev", self.bridge, ok=(0, 2))
        return address

    def remove(self) -> None:
        sh("ip", "link", "del", self.bridge, ok=(0, 1))


@dataclass
class Mounts:
    """What a pod's mount namespace binds where (host path -> path in the pod)."""

    binds: list[tuple[str, str]]


class Sandbox:
    """One pod's namespaces (see the module's docstring)."""

    def __init__(self, name: str, root: Path, network: Network, address: str,
                 mounts: Mounts) -> None:
        self.name, self.address = name, address
        tag = hashlib.sha256(f"{root}/{name}/{address}".encode()).hexdigest()[:10]
        self.netns, self.veth = f"hk{tag}", f"hv{tag}"
        self.mnt = root / "ns" / tag
        try:
            self._make(network, address, mounts)
        except BaseException:
            self.end(0)
            raise

    def _make(self, network: Network, address: str, mounts: Mounts) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
           "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", network.bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        sh("ip", "-n", self.netns, "route", "add", "default", "via", network.gateway)
        self.mnt.touch()
        # Sources first resolved on the host: a bind over a directory that holds
        # the others' sources (/tmp) comes last.
        binds = sorted(mounts.binds, key=lambda b: any(
            src.startswith(b[1] + "/") for src, _ in mounts.binds))
        script = "; ".join(f"mount --bind {src} {dst}" for src, dst in binds)
        sh("unshare", f"--mount={self.mnt}", "--propagation", "private",
           "sh", "-ec", script)

    def enter(self) -> list[str]:
        """The argv prefix that runs a command in the pod, as its account."""
        return ["nsenter", f"--net={NETNS_DIR / self.netns}", f"--mount={self.mnt}",
                "--wd=/", "--", "setpriv", f"--reuid={UID}", f"--regid={UID}",
                "--clear-groups", "--"]

    def pids(self) -> list[int]:
        """Every process in the pod's mount namespace."""
        try:
            ns = os.stat(self.mnt).st_ino
        except FileNotFoundError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(entry / "ns" / "mnt").st_ino == ns:
                        found.append(int(entry.name))
        return found

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def end(self, grace: float) -> None:
        """SIGTERM every process (none with ``grace`` 0), SIGKILL what is left at
        the grace's end; then the namespaces go."""
        deadline = time.monotonic() + grace
        if grace > 0:
            self.signal_all(signal.SIGTERM)
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        while self.pids():
            self.signal_all(signal.SIGKILL)
            time.sleep(0.02)
        sh("umount", str(self.mnt), ok=(0, 32))
        with contextlib.suppress(FileNotFoundError):
            self.mnt.unlink()
        sh("ip", "netns", "del", self.netns, ok=(0, 1))


@contextlib.contextmanager
def private_dir(path: Path) -> Iterator[Path]:
    """A directory on a private mount of its own, where mount namespaces can be
    kept as files (``unshare --mount=<file>`` needs that)."""
    path.mkdir(parents=True, exist_ok=True)
    sh("mount", "--bind", str(path), str(path))
    sh("mount", "--make-private", str(path))
    try:
        yield path
    finally:
        sh("umount", "-l", str(path), ok=(0, 32))
