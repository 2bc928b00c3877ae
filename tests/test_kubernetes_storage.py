"""How full a Kubernetes node's volume is: read by one exec into its pod
(``stat -f`` on the volume's mount), parsed strictly, kept briefly, and no
reading (None) while there is nothing true to read.

The provider talks to kmock's emulator for its objects and to the stand-in for
the kubelet's exec (tests/kube_exec.py), which runs the provider's own command
locally; the node's volume is a real filesystem of its own (an XFS or ext4
image on a loop device, as the local provider makes), mounted where the
node's declaration says, so the reading is compared with the kernel's
statvfs of the same filesystem, byte for byte. The emulator runs no
controllers: the test plays the kubelet (the pod), the binder and the
resizer (the claim's status, the filesystem grown)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.domain.storage import GIB, StorageUsage
from hoard.providers import volumes
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.usage import Readings, parse_statfs
from tests.kube_support import MockApi
from tests.test_kubernetes_exec import NODE, Served, make_pod, serve

LOGGER = "hoard.providers.kubernetes.provider"


def test_the_statfs_line_is_read_strictly() -> None:
    assert parse_statfs("4096 1000 250\n") == StorageUsage(750 * 4096, 1000 * 4096)
    assert parse_statfs("512 8 8") == StorageUsage(0, 4096)
    for odd in ("", "\n", "4096 1000\n", "4096 1000 250 7\n", "4096 1000 250\n\n",
                "4096 1000 250\nstat: warning\n", "-4096 1000 250\n", "4096 1000 ?\n",
                "4096  1000 250\n", "0x10 1000 250\n", "4096 1000 250.5\n",
                "0 1000 250\n", "4096 0 0\n", "4096 1000 1001\n", "1" * 21 + " 1 1\n"):
        with pytest.raises(ValueError, match="stat -f printed"):
            parse_statfs(odd)


def test_a_reading_is_kept_briefly_under_its_key() -> None:
    now = [100.0]
    readings = Readings(ttl=10.0, clock=lambda: now[0])
    asked: list[int] = []

    def read() -> StorageUsage:
        asked.append(1)
        return StorageUsage(len(asked), 100)

    assert readings.get("n", "1Gi", read) == StorageUsage(1, 100)
    now[0] += 9.9
    assert readings.get("n", "1Gi", read) == StorageUsage(1, 100)  # kept
    assert readings.get("n", "2Gi", read) == StorageUsage(2, 100)  # the claim grew
    now[0] += 10.0
    assert readings.get("n", "2Gi", read) == StorageUsage(3, 100)  # old: read again
    readings.forget("n")
    assert readings.get("n", "2Gi", read) == StorageUsage(4, 100)
    assert readings.get("other", "2Gi", read) == StorageUsage(5, 100)  # per node
    failed = Readings(ttl=10.0, clock=lambda: now[0])
    assert failed.get("n", "1Gi", lambda: None) is None
    assert failed.get("n", "1Gi", read) is None  # a failure is kept as long


@pytest.fixture()
def volume(tmp_path: Path) -> Iterator[Path]:
    """A filesystem of 1 GB of its own, mounted: the node's volume."""
    support = volumes.probe()
    if not support.loop:
        pytest.skip(f"no filesystem of its own for the volume here: {support.note}")
    image, mount = tmp_path / "volume.img", tmp_path / "volume"
    volumes.ensure(image, mount, 1, support.filesystem)
    try:
        yield mount
    finally:
        volumes.remove(image, mount)


@pytest.fixture()
def served(tmp_path: Path, volume: Path) -> Iterator[Served]:
    yield from serve(tmp_path, volume)


def bind(api: MockApi, capacity: str) -> None:
    """The claim's status as the binder (then the resizer) writes it."""
    claim: dict[str, Any] = dict(api.objects("persistentvolumeclaims")[names.claim(NODE)])
    claim["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                       "capacity": {"storage": capacity}}
    api.put("persistentvolumeclaims", names.claim(NODE), claim)


def kernel(path: Path) -> StorageUsage:
    """What the kernel says of the filesystem, counted as the local provider does."""
    st = os.statvfs(path)
    return StorageUsage((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize)


def fill_to(path: Path, percent: int) -> None:
    """Blocks really taken on the volume, up to ``percent`` of it."""
    now = kernel(path)
    more = now.total_bytes * percent // 100 - now.used_bytes
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if more > 0:
            os.posix_fallocate(fd, os.fstat(fd).st_size, more)
    finally:
        os.close(fd)


def statfs_calls(served: Served) -> int:
    return sum(1 for argv in served.standin.argvs() if "stat -f" in " ".join(argv))


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_the_volume_is_read_in_its_pod_as_the_kernel_counts_it(
        served: Served, volume: Path, caplog: pytest.LogCaptureFixture) -> None:
    provider, api = served.provider, served.api
    provider.place(NODE, set(), 1)
    provider.hold(NODE, served.spec())
    assert provider.storage_usage(NODE, 1) is None  # no pod yet
    make_pod(api, running=False)
    assert provider.storage_usage(NODE, 1) is None  # its container is not running
    make_pod(api)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert provider.storage_usage(NODE, 1) is None  # its claim is not bound
        assert provider.storage_usage(NODE, 1) is None
    assert said(caplog) == [f"node {NODE}: no storage reading: its claim reports no "
                            "capacity (not bound)"]  # once, not every pass
    assert statfs_calls(served) == 0  # nothing to read: nothing was exec'd
    bind(api, "1Gi")

    read = provider.storage_usage(NODE, 1)
    assert read == kernel(volume) and read is not None
    assert 0.9 * GIB < read.total_bytes <= GIB
    call = next(c for c in served.standin.calls if "stat -f" in " ".join(c.argv))
    assert (call.pod, call.container, call.argv[:2]) == (names.pod(NODE), "server",
                                                         ["sh", "-c"])
    assert call.argv[3] == str(volume)  # the volume's path, an argument (the mount's)
    assert provider.storage_usage(NODE, 1) == read and statfs_calls(served) == 1  # kept

    fill_to(volume, 86)
    provider.readings = Readings(ttl=0.0)  # every reading afresh from here on
    filled = provider.storage_usage(NODE, 1)
    assert filled == kernel(volume) and filled is not None and filled.percent >= 86

    provider.grow_storage(NODE, 2)
    # The claim asks 2 GB, the resizer has not grown the filesystem yet: the
    # old size read now would ask for a growth again, so nothing is read.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert provider.storage_usage(NODE, 2) is None
    assert said(caplog) == [f"node {NODE}: no storage reading: its claim is being resized "
                            "from 1Gi to 2Gi"]
    image = volume.parent / "volume.img"
    volumes.grow_online(image, volume, 2 * volumes.GB)
    bind(api, "2Gi")
    grown = provider.storage_usage(NODE, 2)
    assert grown == kernel(volume) and grown is not None
    assert grown.total_bytes > 1.5 * GIB and grown.percent < 50

    pod = dict(api.objects("pods")[names.pod(NODE)])
    pod["metadata"] = {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    api.put("pods", names.pod(NODE), pod)
    calls = statfs_calls(served)
    assert provider.storage_usage(NODE, 2) is None  # being deleted (re-created next)
    provider.stop(NODE)
    provider.destroy(NODE)
    assert provider.storage_usage(NODE, 2) is None  # gone
    assert statfs_calls(served) == calls


def test_a_reading_that_fails_is_none_and_said(served: Served, volume: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The pod mounts its volume where nothing is (the command cannot enter it):
    no reading, a log line saying why, and the failure kept (one exec)."""
    provider, api = served.provider, served.api
    provider.place(NODE, set(), 1)
    provider.hold(NODE, served.spec())
    sts = api.objects("statefulsets")[names.node_object(NODE)]
    for mount in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]:
        if mount["name"] == "data":
            mount["mountPath"] = str(volume / "missing")
    api.put("statefulsets", names.node_object(NODE), sts, group="apps")
    make_pod(api)
    bind(api, "1Gi")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert provider.storage_usage(NODE, 1) is None
        assert provider.storage_usage(NODE, 1) is None
    lines = said(caplog)
    assert len(lines) == 1 and lines[0].startswith(
        f"node {NODE}: no storage reading of its volume at {volume / 'missing'}: "
        "ToolFailed: stat exited 125"), lines
    assert statfs_calls(served) == 1

    bind(api, "a lot")  # not a quantity: no size is guessed from it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert provider.storage_usage(NODE, 1) is None
    assert said(caplog) == [f"node {NODE}: no storage reading: its claim's sizes are not "
                            "read: could not convert string to float: 'a lot'"]
    assert statfs_calls(served) == 1
