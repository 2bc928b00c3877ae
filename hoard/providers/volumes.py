"""Per-node filesystems of a fixed size for local nodes: an ext4 image on a loop
device, mounted at the node's directory, so ``storage_gb`` is a hard limit.

Used where the host allows (root, loop devices, mkfs.ext4); elsewhere the node
directory is a plain directory and the size is only observed. Growing needs the
filesystem unmounted (online resize is refused in some sandboxes and is not
worth depending on), so the workflow stops the node around it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

GB = 1024**3
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
    if os.geteuid() != 0:
        return False, "Hoard does not run as root"
    for tool in ("mkfs.ext4", "mount", "umount", "resize2fs", "e2fsck"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed"
    with tempfile.TemporaryDirectory(prefix="hoard-volume-probe-") as tmp:
        image, mnt = Path(tmp) / "probe.img", Path(tmp) / "mnt"
        mnt.mkdir()
        try:
            with open(image, "wb") as fh:
                fh.truncate(16 * 1024 * 1024)
            _check(["mkfs.ext4", "-q", "-F", str(image)])
            _check(["mount", "-o", "loop", str(image), str(mnt)])
        except (RuntimeError, OSError) as exc:
            return False, f"loop mounts are not available ({exc})"
        _run(["umount", str(mnt)])
    return True, "ext4 filesystem on a loop device"


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def ensure(image: Path, mountpoint: Path, size_gb: int) -> None:
    """Create (if missing), format and mount the node's filesystem. Idempotent:
    an image whose creation was interrupted is made again."""
    if is_mounted(mountpoint):
        return
    mountpoint.mkdir(parents=True, exist_ok=True)
    if image.exists() and _run([*MOUNT, str(image), str(mountpoint)]).returncode == 0:
        return
    image.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as fh:
        fh.truncate(size_gb * GB)  # sparse: costs nothing until written
    _check(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
            "lazy_itable_init=1,lazy_journal_init=1", str(image)])
    _check([*MOUNT, str(image), str(mountpoint)])
    with contextlib.suppress(FileNotFoundError):
        (mountpoint / "lost+found").rmdir()


def grow(image: Path, mountpoint: Path, size_gb: int) -> None:
    """Grow the filesystem to ``size_gb``; its users must be stopped."""
    if image.stat().st_size >= size_gb * GB:
        return
    if is_mounted(mountpoint):
        _check(["umount", str(mountpoint)])
    with open(image, "r+b") as fh:
        fh.truncate(size_gb * GB)
    # resize2fs insists on a fresh check; exit 1 means "fixed something", which is fine.
    fsck = _run(["e2fsck", "-f", "-p", str(image)])
    if fsck.returncode not in (0, 1):
        raise RuntimeError(f"e2fsck found errors it cannot fix in {image.name}: "
                           f"{fsck.stdout.strip()[-300:]}")
    _check(["resize2fs", str(image)])
    _check([*MOUNT, str(image), str(mountpoint)])


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

