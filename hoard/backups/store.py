"""The BackupStore seam: the only place that knows where backup bytes live.

Keys are validated here, once, for every backend, so no key can name a path
outside the store (``..``, absolute paths, empty components, control bytes).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

MAX_KEY_LENGTH = 512
MAX_COMPONENT_LENGTH = 200  # a file name, plus LocalStore's temporary affixes, fits in 255
READ_CHUNK = 1024 * 1024  # what get() yields at a time, unless asked otherwise

# Every component starts with a letter or digit, so "." and ".." (and hidden
# temporary names such as LocalStore's ".name.tmp") can never be keys.
_COMPONENT = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_COMPONENT_LENGTH - 1}}}"
_KEY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


@dataclass(frozen=True)
class Unfinished:
    """An upload in progress or abandoned: the key it was for and the store's own
    name for the upload (a multipart upload id, a temporary file)."""

    key: str
    upload_id: str


class ObjectNotFound(LookupError):
    """get() or size() of a key the store does not hold."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no backup object {key!r} in the store")
        self.key = key


def validate_key(key: str) -> str:
    """The key itself if it is a safe relative name, else ValueError."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ValueError(
            f"invalid backup key {key!r}: use '/'-separated names of letters, digits, "
            f"'.', '_' and '-', each starting with a letter or digit and at most "
            f"{MAX_COMPONENT_LENGTH} long, {MAX_KEY_LENGTH} characters in all"
        )
    return key


def validate_prefix(prefix: str) -> str:
    """A list() prefix: empty, or a valid key optionally ending with '/'."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


class BackupStore(ABC):
    """Where backup bytes go. Every method streams; none holds an object in memory.

    ``put`` is atomic: the object appears complete or not at all, and writing a
    key again replaces it, so a retried workflow step may simply put again.
    """

    @abstractmethod
    def put(self, key: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Store the bytes ``chunks`` yields under ``key``; return how many were written.

        If ``chunks`` (or the store) fails midway, nothing becomes visible and the
        partial upload is removed. ``size_hint`` (expected bytes, if known) lets a
        backend choose larger parts for very large objects.
        """

    @abstractmethod
    def get(self, key: str, *, first: int = 0, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The object's bytes: its first ``first`` bytes as one chunk (if ``first``),
        then chunks of ``size`` bytes, the last one shorter (a framed format, such
        as an encrypted backup, is read in its own frames and needs no re-cutting).

        Raises ObjectNotFound at call time (not at the first ``next()``).
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a complete object is stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; ObjectNotFound if absent."""

    @abstractmethod
    def unfinished(self) -> Sequence[Unfinished]:
        """Uploads begun and neither completed nor removed: running ones, and those
        a crashed writer (``kill -9`` mid-put) left behind. Never complete objects."""

    @abstractmethod
    def abort(self, upload: Unfinished) -> None:
        """Remove an unfinished upload (its object never appears); one already
        gone is not an error. See ``hoard.backups.sweeper`` for when."""
