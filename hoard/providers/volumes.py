"""Per-node filesystems of a fixed size for local nodes: an image file on a loop
device, mounted at the node's directory, so ``storage_gb`` is a hard limit.

Used where the host allows (root, loop devices, mkfs); elsewhere the node
directory is a plain directory and the size is only observed.

Growing while mounted: the image file is made larger, the loop device is told
(``losetup -c``), and the filesystem grows into it (``resize2fs`` on the device
for ext4, ``xfs_growfs`` on the mountpoint for XFS). The kernel lets ext4 grow
mounted only with CAP_SYS_RESOURCE, which some hosts (containers, sandboxes)
drop from every process; XFS needs CAP_SYS_ADMIN only, which mounting needs
anyway. So new volumes are ext4 where ext4 grows mounted, else XFS where that
grows mounted, else ext4 grown unmounted (its node stopped around it):
:func:`probe` finds out once per process, by trying on a small image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

GB = 1024**3
XFS_MIN_BYTES = 300 * 1024**2  # mkfs.xfs refuses smaller filesystems
FILESYSTEMS = ("ext4", "xfs")
# The filesystem belongs to one node's account: nothing on it may raise privileges.
MOUNT = ["mount", "-o", "loop,nosuid,nodev"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def _check(argv: list[str]) -> None:
    proc = _run(argv)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"{argv[0]} failed: {detail[-1] if detail else proc.returncode}")


def supported() -> tuple[bool, str]:
    """Whether loop-mounted filesystems work here, and if not, why."""
    support = probe()
    return support.loop, support.note


@dataclass(frozen=True)
class Support:
    """What this host offers node volumes: loop mounts at all (and if not, why),
    the filesystem new volumes get, and the filesystems that grow mounted."""

    loop: bool
    note: str
    filesystem: str = "ext4"
    online: frozenset[str] = frozenset()

    def using(self, fs: str) -> Support:
        """The same host, new volumes made ``fs`` (an operator's choice)."""
        if fs == "xfs" and not shutil.which("mkfs.xfs"):
            return replace(self, loop=False, note="mkfs.xfs is not installed (xfsprogs)")
        how = "grown while mounted" if fs in self.online else "grown with its node stopped"
        return replace(self, filesystem=fs, note=f"{fs} filesystem on a loop device, {how}")


_probed: Support | None = None


def probe() -> Support:
    """Try, once per process, what works here (a few small sparse images)."""
    global _probed
    if _probed is None:
        _probed = _probe()
    return _probed


def _probe() -> Support:
    if os.geteuid() != 0:
        return Support(False, "Hoard does not run as root")
    for tool in ("mkfs.ext4", "mount", "umount", "losetup", "resize2fs", "e2fsck"):
        if shutil.which(tool) is None:
            return Support(False, f"{tool} is not installed")
    online = set()
    with tempfile.TemporaryDirectory(prefix="hoard-volume-probe-") as tmp:
        try:
            if _grows_mounted(Path(tmp), "ext4"):
                online.add("ext4")
        except (RuntimeError, OSError) as exc:
            return Support(False, f"loop mounts are not available ({exc})")
        if shutil.which("mkfs.xfs") and shutil.which("xfs_growfs"):
            with contextlib.suppress(RuntimeError, OSError):
                if _grows_mounted(Path(tmp), "xfs"):
                    online.add("xfs")
    fs = "ext4" if "ext4" in online or "xfs" not in online else "xfs"
    return Support(True, "", online=frozenset(online)).using(fs)


def _grows_mounted(tmp: Path, fs: str) -> bool:
    """Make a small filesystem, mount it, and try to grow it mounted."""
    image, mnt = tmp / f"{fs}.img", tmp / f"{fs}-mnt"
    mnt.mkdir()
    small = XFS_MIN_BYTES if fs == "xfs" else 16 * 1024**2
    with open(image, "wb") as fh:
        fh.truncate(small)
    _mkfs(image, fs)
    _check([*MOUNT, str(image), str(mnt)])
    try:
        grow_online(image, mnt, small + 16 * 1024**2)
        return True
    except GrowRefused:
        return False
    finally:
        _run(["umount", str(mnt)])


def _mkfs(image: Path, fs: str) -> None:
    if fs == "xfs":
        _check(["mkfs.xfs", "-q", "-f", str(image)])
    else:
        _check(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                "lazy_itable_init=1,lazy_journal_init=1", str(image)])


def filesystem(image: Path) -> str:
    """The image's filesystem, from its superblock's magic: "xfs" or "ext4"."""
    with open(image, "rb") as fh:
        head = fh.read(1024 + 0x3A)
    if head[:4] == b"XFSB":
        return "xfs"
    return "ext4"  # 0xEF53 at 1024 + 0x38; every other volume Hoard made is ext4


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def ensure(image: Path, mountpoint: Path, size_gb: int, fs: str = "ext4") -> None:
    """Create (if missing), format (``fs``) and mount the node's filesystem.
    Idempotent: an image whose creation was interrupted is made again."""
    if is_mounted(mountpoint):
        return
    mountpoint.mkdir(parents=True, exist_ok=True)
    if image.exists() and _run([*MOUNT, str(image), str(mountpoint)]).returncode == 0:
        return
    image.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as fh:
        fh.truncate(size_gb * GB)  # sparse: costs nothing until written
    _mkfs(image, fs)
    _check([*MOUNT, str(image), str(mountpoint)])
    with contextlib.suppress(FileNotFoundError):
        (mountpoint / "lost+found").rmdir()


class GrowRefused(RuntimeError):
    """The filesystem could not grow while mounted (nothing is lost: the image is
    larger, and an unmounted growth takes it from there)."""


def _loop_device(mountpoint: Path) -> str:
    proc = _run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(mountpoint)])
    device = proc.stdout.strip()
    if proc.returncode != 0 or not device.startswith("/dev/loop"):
        raise GrowRefused(f"{mountpoint.name} is not mounted from a loop device")
    return device


def _enlarge(image: Path, size_bytes: int) -> None:
    if image.stat().st_size < size_bytes:
        with open(image, "r+b") as fh:
            fh.truncate(size_bytes)  # sparse again: the new space costs nothing yet


def grow_online(image: Path, mountpoint: Path, size_bytes: int) -> None:
    """Grow the mounted filesystem to ``size_bytes`` while its users go on using
    it. Idempotent: a filesystem that already spans its image is left alone by
    both tools. Raises GrowRefused with the tool's own words if it cannot."""
    device = _loop_device(mountpoint)
    _enlarge(image, size_bytes)
    refresh = _run(["losetup", "-c", device])
    if refresh.returncode != 0:
        raise GrowRefused(f"losetup -c {device}: {_last_line(refresh)}")
    if filesystem(image) == "xfs":
        proc = _run(["xfs_growfs", "-d", str(mountpoint)])
    else:
        proc = _run(["resize2fs", device])
    if proc.returncode != 0:
        raise GrowRefused(f"{proc.args[0]}: {_last_line(proc)}")


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def grow(image: Path, mountpoint: Path, size_gb: int) -> None:
    """Grow the filesystem to ``size_gb`` with its users stopped. ext4 is grown
    unmounted (after the fresh check resize2fs insists on); XFS grows only
    mounted, which needs no stop. Idempotent."""
    if filesystem(image) == "xfs":
        if not is_mounted(mountpoint):
            _check([*MOUNT, str(image), str(mountpoint)])
        grow_online(image, mountpoint, size_gb * GB)
        return
    if is_mounted(mountpoint):
        _check(["umount", str(mountpoint)])
    _enlarge(image, size_gb * GB)
    # exit 1 means "fixed something", which is fine.
    fsck = _run(["e2fsck", "-f", "-p", str(image)])
    if fsck.returncode not in (0, 1):
        raise RuntimeError(f"e2fsck found errors it cannot fix in {image.name}: "
                           f"{fsck.stdout.strip()[-300:]}")
    _check(["resize2fs", str(image)])
    _check([*MOUNT, str(image), str(mountpoint)])


def spans(image: Path, size_gb: int) -> bool:
    """Whether the image is ``size_gb`` already and its filesystem fills it (ext4's
    superblock, read from the image: a growth interrupted after the image was
    made larger is not taken for done)."""
    if image.stat().st_size < size_gb * GB:
        return False
    if filesystem(image) == "xfs":
        return False  # growing a grown XFS is a cheap no-op: never skipped
    with open(image, "rb") as fh:
        fh.seek(1024)
        sb = fh.read(0x160)
    blocks = int.from_bytes(sb[4:8], "little")
    if int.from_bytes(sb[0x60:0x64], "little") & 0x80:  # INCOMPAT_64BIT
        blocks |= int.from_bytes(sb[0x150:0x154], "little") << 32
    return blocks * (1024 << int.from_bytes(sb[24:28], "little")) >= image.stat().st_size


def remove(image: Path, mountpoint: Path) -> None:
    """Unmount and delete the filesystem. Idempotent.

    A reader that still has a file open (the log archiver finishing a file, a
    backup tool on its way out) makes the unmount "busy" for a moment: retry
    briefly, then detach lazily; the kernel frees the device when the last file
    closes, and nothing can open a new one under the gone mountpoint."""
    for _ in range(20):
        if not is_mounted(mountpoint) or _run(["umount", str(mountpoint)]).returncode == 0:
            break
        time.sleep(0.1)
    else:
        _check(["umount", "--lazy", str(mountpoint)])
    with contextlib.suppress(FileNotFoundError):
        image.unlink()

