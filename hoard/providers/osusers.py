"""OS accounts for what the local provider runs: one of its own per node and per
endpoint proxy, so a compromised server reaches no other tenant's files.

Accounts come from a configured uid range (``HOARD_DB_UID_RANGE``), are made
with ``groupadd``/``useradd`` (no home, no login shell, uid = gid) and removed
with what they ran. Which account belongs to what is Hoard's own record
(``owner.json`` in a root-only directory), never anything the account can
write. Shared platform services (etcd) run as one named service account.

Allocation is machine-wide (several Hoards, and test runs, may share a host):
it holds a lock file, takes the next free uid after the last one handed out
(so a uid is not given again soon after its account was removed) and skips
uids and gids in use and subordinate ranges in ``/etc/subuid``/``/etc/subgid``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import itertools
import json
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_UID_RANGE = (200000, 265535)
LOCK = Path("/run/lock/hoard-uids")  # holds the last uid handed out from each range
OWNER = "owner.json"
MARK = "hoard "  # how Hoard's accounts are told apart (the GECOS field)
NOLOGIN = "/usr/sbin/nologin"
# An account tool's prefix: queued machine-wide on the lock file (by flock(1),
# in the child), at a raised priority (see _tool).
QUEUED = ["nice", "-n", "-10", "flock"]
LEFTOVER_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - swept as the account itself


def hoard_is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class OSUser:
    """An account processes run as. ``dedicated``: it runs nothing but one node's
    (or one proxy's) processes, so every process with its uid is that node's."""

    name: str
    uid: int
    gid: int
    dedicated: bool = False

    @property
    def is_root(self) -> bool:
        """Whether Hoard runs as root (and so switches to this account)."""
        return hoard_is_root()

    def wrap(self, argv: list[str], pdeathsig: bool) -> list[str]:
        """``argv`` run as this account (unchanged when Hoard is not root)."""
        if not self.is_root:
            return argv
        pre = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        if pdeathsig:
            pre.append("--pdeathsig=KILL")
        return [*pre, "--", *argv]

    def fchown(self, fd: int) -> None:
        """Give an open file to this account (by descriptor: never by a path the
        account could have swapped for a link)."""
        if self.is_root:
            os.fchown(fd, self.uid, self.gid)


def current_user() -> OSUser:
    entry = pwd.getpwuid(os.geteuid())
    return OSUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def service_user(name: str) -> OSUser:
    """The shared account of Hoard's platform services, created when root."""
    if not hoard_is_root():
        return current_user()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _tool(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
               "/nonexistent", "--shell", NOLOGIN, name])
        entry = pwd.getpwnam(name)
    return OSUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _tool(argv: list[str], ok: tuple[int, ...] = (0,)) -> int:
    """Run an account tool (useradd, userdel, groupdel), one at a time on the
    machine: each rewrites /etc/passwd and fails while another holds it. They
    queue by flock(1), in the child, on the lock file Hoard checked (by
    /dev/fd): a burst of creates queues there, and a queue held by a thread of
    a busy worker had moved only as fast as that thread got the GIL back (a
    tenth of a second a turn, in 50 creates at once). The tool runs at a higher
    CPU priority than the rest of the machine's work, since everyone's next
    account waits for its turn to end (in 50 creates at once on 3 workers, the
    median time to place a node fell from 2.3 to 1.3 s). Its complaints go to a
    file, read only when it fails: waiting on a pipe would take the GIL back
    for every read. Retried while a tool not Hoard's holds /etc/passwd."""
    fd = _open_lock()
    try:
        for _ in range(100):
            with tempfile.TemporaryFile() as err:
                code = subprocess.run([*QUEUED, f"/dev/fd/{fd}", *argv],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, check=False, timeout=60,
                                      pass_fds=(fd,)).returncode
                if code in ok:
                    return code
                err.seek(0)
                said = err.read().decode(errors="replace")
            if "lock" not in said and "currently used" not in said:
                break
            time.sleep(0.1)
    finally:
        os.close(fd)
    raise RuntimeError(f"{argv[0]} failed ({code}): {said.strip()[-300:]}")


def _entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _id_free(uid: int) -> bool:
    """No account has ``uid`` and no group has it as its gid."""
    try:
        pwd.getpwuid(uid)
        return False
    except KeyError:
        pass
    try:
        grp.getgrgid(uid)
        return False
    except KeyError:
        return True


def _subordinate() -> list[tuple[int, int]]:
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    ranges.append((int(parts[1]), int(parts[1]) + int(parts[2]) - 1))
    return ranges


def _open_lock() -> int:
    """The machine-wide lock file, root's own (a link or another's file in the
    shared lock directory is refused)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise RuntimeError(f"{LOCK} is not Hoard's own: remove it")
    return fd


@contextlib.contextmanager
def _allocation_lock() -> Iterator[int]:
    fd = _open_lock()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _write_record(record_dir: Path, user: OSUser) -> None:
    """Record the account atomically, through a temporary file of this call's
    own: two ensures of one record at once (a step run again while the first
    still runs) each write the same record, and neither may rename away the
    other's temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=OWNER + ".", suffix=".tmp", dir=record_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"name": user.name, "uid": user.uid, "gid": user.gid}))
        os.replace(tmp, record_dir / OWNER)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class UserPool:
    """Dedicated accounts from ``uid_range``, each recorded in a root-only directory."""

    def __init__(self, uid_range: tuple[int, int] = DEFAULT_UID_RANGE) -> None:
        self.lo, self.hi = uid_range

    @staticmethod
    def _name(record_dir: Path) -> str:
        # Derived from Hoard's own record, so a Hoard that died between making the
        # account and recording it finds the account again.
        digest = hashlib.sha256(os.path.abspath(record_dir).encode()).hexdigest()
        return "hoard-" + digest[:16]

    def recorded(self, record_dir: Path) -> OSUser | None:
        """The account recorded for ``record_dir``, or None (none made yet)."""
        if not hoard_is_root():
            return current_user()
        try:
            record = json.loads((record_dir / OWNER).read_text())
            user = OSUser(str(record["name"]), int(record["uid"]), int(record["gid"]), True)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        entry = _entry(user.name)
        if entry is None:
            return user  # removed behind Hoard's back: ensure() makes it again
        if (entry.pw_uid, entry.pw_gid) != (user.uid, user.gid):
            raise RuntimeError(f"account {user.name} no longer has uid {user.uid}")
        return user

    def ensure(self, record_dir: Path, label: str) -> OSUser:
        """The account of ``record_dir``, made and recorded on first use."""
        if not hoard_is_root():
            return current_user()
        record_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        user = self.recorded(record_dir)
        if user is not None and _exists(user.name):
            return user
        name = user.name if user else self._name(record_dir)
        entry = _entry(name)
        for _ in range(5):
            if entry is not None:
                break
            uid = user.uid if user else self._next_uid()
            # 4: another tool took the uid just now (try the next); 9: a
            # concurrent ensure of this same record made the account.
            code = self._create(name, uid, label)
            entry = _entry(name)
            if entry is None and (code == 9 or user is not None):
                raise RuntimeError(f"account {name} could not be made with uid {uid}: "
                                   f"useradd says the {'name' if code == 9 else 'uid'} is "
                                   "taken (a group of that name or id?)")
        if entry is None:
            raise RuntimeError(f"account {name} could not be made")
        if not entry.pw_gecos.startswith(MARK):
            raise RuntimeError(f"account {name} exists and is not one of Hoard's")
        user = OSUser(entry.pw_name, entry.pw_uid, entry.pw_gid, True)
        _write_record(record_dir, user)
        return user

    def _next_uid(self) -> int:
        """Hand out the next free uid after the last one handed out (kept in the
        lock file), under the lock: a short section, apart from the tool's run."""
        sub = _subordinate()
        key = f"{self.lo}-{self.hi}"
        with _allocation_lock() as lock:
            try:  # the last uid handed out from each range
                cursors = dict(json.loads(os.pread(lock, 1 << 16, 0) or b"{}"))
            except (ValueError, TypeError):
                cursors = {}
            last = cursors.get(key)
            start = last + 1 if isinstance(last, int) and self.lo <= last < self.hi else self.lo
            for uid in itertools.chain(range(start, self.hi + 1), range(self.lo, start)):
                if _id_free(uid) and not any(a <= uid <= b for a, b in sub):
                    cursors[key] = uid
                    os.ftruncate(lock, 0)
                    os.pwrite(lock, json.dumps(cursors).encode(), 0)
                    return uid
        raise RuntimeError(f"no free uid left in {key} (HOARD_DB_UID_RANGE)")

    @staticmethod
    def _create(name: str, uid: int, label: str) -> int:
        """The tool's exit code: 0 made, 4 the uid is taken, 9 the name is.

        One tool run, not two (groupadd, then useradd). --system: no subordinate
        ids and no password ageing; -U makes the account's own group, whose gid
        the -K bounds pin to the uid (useradd fails rather than pick another).
        userdel removes that group with the account."""
        return _tool(["useradd", "--system", "-u", str(uid), "-U", "-K", f"SYS_GID_MIN={uid}",
                      "-K", f"SYS_GID_MAX={uid}", "-M", "-l", "-d", "/nonexistent", "-s",
                      NOLOGIN, "-c", MARK + label, name], ok=(0, 4, 9))

    def remove(self, record_dir: Path) -> None:
        """Remove the account of ``record_dir`` (its processes must be gone) and
        what it left in shared temporary places, so the uid, given again one
        day, inherits nothing. Idempotent."""
        user = self.recorded(record_dir) if hoard_is_root() else None
        if user is not None and _exists(user.name):
            # As the account itself: it deletes only what it could delete anyway,
            # and root follows no link it planted there.
            subprocess.run(user.wrap(["find", *LEFTOVER_DIRS, "-xdev", "-user", str(user.uid),
                                      "-delete"], pdeathsig=True),
                           cwd="/", capture_output=True, check=False, timeout=120)
            _gone(["userdel", user.name], lambda: not _exists(user.name))
            _gone(["groupdel", user.name], lambda: not _group_exists(user.name))
        with contextlib.suppress(FileNotFoundError):
            (record_dir / OWNER).unlink()


def _gone(argv: list[str], gone: Callable[[], bool]) -> None:
    """Remove an account or group; one that another remover took away first (two
    destroys of one node can race: a step and the observer's replacement) is
    removed all the same, whatever the tool said about it."""
    try:
        _tool(argv, ok=(0, 6))
    except RuntimeError:
        if not gone():
            raise


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _exists(name: str) -> bool:
    return _entry(name) is not None
