"""SHA-256 of the bytes that flow through an iterator, without holding them.

``upload`` records the digest of the stored (encrypted) object in the backup's
manifest; ``download`` checks it. The AEAD already authenticates each segment
against the data key; the checksum adds what it cannot: that the object is the
very one the manifest describes (not another backup sealed with the same key),
and a cheap integrity check (``Digesting`` over ``store.get``) for scrubbing
stored backups without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator

from hoard.backups.crypto import BackupCorrupted

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Digesting:
    """Iterate over it to pass ``chunks`` through; afterwards ``hexdigest()`` and
    ``size`` describe everything that went by."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self.size = 0
        self.finished = False
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a Digesting stream can be iterated once")
        self._started = True
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk
        self.finished = True

    def hexdigest(self) -> str:
        """The SHA-256 of the whole stream; refused before the stream has ended,
        when it would describe only a prefix."""
        if not self.finished:
            raise RuntimeError("the stream has not been read to its end")
        return self._hash.hexdigest()


def verify(chunks: Iterable[bytes], expected_sha256: str) -> Iterator[bytes]:
    """Pass ``chunks`` through; at the end raise BackupCorrupted unless their
    SHA-256 is ``expected_sha256``.

    A mismatch can only be known at the end, after every chunk has been
    yielded: callers must not act on the data (restore, apply, report success)
    until this iterator is exhausted without raising. ``pipeline.download``
    puts ``decrypt`` after it, which holds back the last segment until then.
    """
    if not _SHA256.fullmatch(expected_sha256):
        raise ValueError(f"not a SHA-256 hex digest: {expected_sha256!r}")
    return _verified(Digesting(chunks), expected_sha256.lower())


def _verified(digest: Digesting, expected_sha256: str) -> Iterator[bytes]:
    yield from digest
    actual = digest.hexdigest()
    if not hmac.compare_digest(actual, expected_sha256):
        raise BackupCorrupted(
            f"its SHA-256 is {actual}, the manifest recorded {expected_sha256} "
            f"({digest.size} bytes read)")
