"""Files in a directory tree that a less trusted OS account can write (a node's
directory, a proxy's), handled by Hoard (root) without following anything that
account may have planted there.

- Every path is walked from a descriptor of the tree's root, one component at
  a time, with ``O_NOFOLLOW``: a link (to ``/etc``, to another node) is never
  followed, so nothing outside the tree is read, written or given away.
- A file is written under a staging name made with ``O_EXCL``, given to the
  account by descriptor (``fchown``), and renamed over its name within its
  directory (a rename replaces a link, it does not follow it).
- An existing file is read or appended to only if it is a regular file that is
  the account's own or has no other link (so a hard link to a file of root's
  is refused), opened non-blocking (a FIFO cannot hang Hoard).
- Where Hoard needs a directory and finds a link or a file, it removes that
  entry (it is the account's own) and makes a directory: the node keeps working
  and nothing outside its tree changes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from hoard.providers.osusers import OSUser

CHUNK = 1 << 20
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NOT_A_DIR = (errno.ENOTDIR, errno.ELOOP)


def parts(rel: PurePosixPath | str) -> list[str]:
    """The components of a path inside the tree; refuses one that leaves it."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"path {rel} leaves the node directory")
    return [p for p in path.parts if p != "."]


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a file, a link or a whole tree) from the directory
    ``dir_fd``, following nothing; missing is fine."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # descriptor-based: avoids symlink attacks
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


class UserTree:
    """The tree under ``root``, whose files belong to ``user``."""

    def __init__(self, root: Path, user: OSUser) -> None:
        self.root = root
        self.user = user

    def path(self, rel: PurePosixPath | str) -> Path:
        """Where ``rel`` is, as the account's processes see it (no link resolved)."""
        return self.root.joinpath(*parts(rel))

    @contextlib.contextmanager
    def directory(self, rel: PurePosixPath | str, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory ``rel``, walked without following links;
        with ``create``, missing directories (or entries that are not real
        directories) are made as the account's."""
        fd = os.open(self.root, DIR_FLAGS)
        try:
            for name in parts(rel):
                child = self._step(fd, name, create)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _step(self, fd: int, name: str, create: bool) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if not create or exc.errno not in NOT_A_DIR:
                raise
            remove_entry(fd, name)  # a link or a file where a directory belongs
        return self._make_dir(fd, name)

    def _make_dir(self, fd: int, name: str) -> int:
        """Make ``name`` under a staging name, give it to the account, then rename
        it into place: a crash never leaves a directory of root's there. The
        staging name is this call's own, so two steps making the same directory
        at once never take each other's."""
        staging = f".{name}.{secrets.token_hex(4)}.new"
        os.mkdir(staging, 0o700, dir_fd=fd)
        made = os.open(staging, DIR_FLAGS, dir_fd=fd)
        try:
            self.user.fchown(made)
            os.rename(staging, name, src_dir_fd=fd, dst_dir_fd=fd)
            return made
        except OSError as exc:
            os.close(made)
            remove_entry(fd, staging)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return os.open(name, DIR_FLAGS, dir_fd=fd)  # made meanwhile by another step

    def ensure_dir(self, rel: PurePosixPath | str) -> None:
        with self.directory(rel, create=True):
            pass

    def own_root(self, mode: int = 0o700) -> None:
        """Give the tree's root to the account with ``mode`` (by descriptor)."""
        fd = os.open(self.root, DIR_FLAGS)
        try:
            os.fchmod(fd, mode)
            self.user.fchown(fd)
        finally:
            os.close(fd)

    def _split(self, rel: PurePosixPath | str) -> tuple[list[str], str]:
        names = parts(rel)
        if not names:
            raise ValueError(f"path {rel} names the tree itself")
        return names[:-1], names[-1]

    def _open_existing(self, dir_fd: int, name: str, flags: int) -> int:
        fd = os.open(name, flags | FILE_FLAGS, dir_fd=dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_uid != self.user.uid and st.st_nlink > 1):
            os.close(fd)
            raise PermissionError(errno.EPERM, "not a regular file of the node's own", name)
        os.set_blocking(fd, True)
        return fd

    def write_stream(self, rel: PurePosixPath | str, chunks: Iterable[bytes],
                     mode: int = 0o600) -> int:
        """Write ``chunks`` to ``rel`` as the account's file; it appears only whole."""
        parents, name = self._split(rel)
        staging = name + ".tmp"
        written = 0
        with self.directory(PurePosixPath(*parents), create=True) as dir_fd:
            remove_entry(dir_fd, staging)  # a leftover, or a link planted there
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as fh:  # large writes go straight through
                    os.fchmod(fh.fileno(), mode)
                    self.user.fchown(fh.fileno())
                    for chunk in chunks:
                        written += fh.write(chunk)
                os.rename(staging, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staging, dir_fd=dir_fd)
                raise
        return written

    def open_append(self, rel: PurePosixPath | str) -> int:
        """A descriptor appending to the account's file ``rel`` (a log), made if
        missing; anything else found there is replaced by a new file."""
        parents, name = self._split(rel)
        flags = os.O_WRONLY | os.O_APPEND
        with self.directory(PurePosixPath(*parents), create=True) as dir_fd:
            try:
                fd = self._open_existing(dir_fd, name, flags)
                if os.fstat(fd).st_uid == self.user.uid:
                    return fd
                os.close(fd)
            except FileNotFoundError:
                pass
            except OSError:
                pass  # a link, a FIFO, a directory, a file of someone else's
            remove_entry(dir_fd, name)
            fd = os.open(name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
            self.user.fchown(fd)
            return fd

    def read_stream(self, rel: PurePosixPath | str) -> Iterator[bytes]:
        """The bytes of the account's regular file ``rel``, in chunks."""
        parents, name = self._split(rel)
        with self.directory(PurePosixPath(*parents)) as dir_fd:
            fd = self._open_existing(dir_fd, name, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def read_tail(self, rel: PurePosixPath | str, max_bytes: int) -> bytes:
        """The last ``max_bytes`` of the account's regular file ``rel`` (a log)."""
        parents, name = self._split(rel)
        with self.directory(PurePosixPath(*parents)) as dir_fd:
            fd = self._open_existing(dir_fd, name, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            return fh.read(max_bytes)

    def read_range(self, rel: PurePosixPath | str, offset: int | None,
                   max_bytes: int) -> tuple[bytes, int, int]:
        """At most ``max_bytes`` of the account's regular file ``rel`` from
        ``offset`` (None: the last ``max_bytes``; past the end: from the start,
        the file was cut): (bytes, where they start, where they end)."""
        parents, name = self._split(rel)
        with self.directory(PurePosixPath(*parents)) as dir_fd:
            fd = self._open_existing(dir_fd, name, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            tail = max(0, size - max_bytes)
            start = tail if offset is None else offset if offset <= size else 0
            fh.seek(start)
            data = fh.read(min(max_bytes, size - start))
        return data, start, start + len(data)

    def read_bytes(self, rel: PurePosixPath | str) -> bytes | None:
        """The whole of a small file, or None if it is missing or not a plain file."""
        try:
            return b"".join(self.read_stream(rel))
        except (OSError, ValueError):
            return None

    def exists(self, rel: PurePosixPath | str) -> bool:
        names = parts(rel)
        if not names:
            return self.root.is_dir()
        try:
            with self.directory(PurePosixPath(*names[:-1])) as dir_fd:
                os.stat(names[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in NOT_A_DIR:
                return False
            raise
        return True

    def remove_tree(self, rel: PurePosixPath | str) -> None:
        """Remove a file or a whole directory; missing is fine."""
        parents, name = self._split(rel)
        try:
            with self.directory(PurePosixPath(*parents)) as dir_fd:
                remove_entry(dir_fd, name)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in NOT_A_DIR:
                raise

    def rename(self, src: PurePosixPath | str, dst: PurePosixPath | str) -> None:
        src_parents, src_name = self._split(src)
        dst_parents, dst_name = self._split(dst)
        with (self.directory(PurePosixPath(*src_parents)) as src_fd,
              self.directory(PurePosixPath(*dst_parents)) as dst_fd):
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def list_dir(self, rel: PurePosixPath | str) -> list[str]:
        """Names in a directory, sorted; empty if it is missing."""
        try:
            with self.directory(rel) as fd:
                return sorted(os.listdir(fd))
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno in NOT_A_DIR:
                return []
            raise
