"""Streaming authenticated encryption of backups (AES-256-GCM, STREAM construction).

The same shape as Tink's AES-GCM-HKDF streaming AEAD and age: a backup is cut
into fixed segments, each sealed on its own, so memory holds one segment and a
restore can stream. Format (version 1)::

    header  = b"HOARDENC1" || salt (16 random bytes) || nonce prefix (7 random bytes)
    segment = AES-256-GCM(subkey, nonce, plaintext, ad) -> ciphertext || 16-byte tag
    subkey  = HKDF-SHA256(data key, salt, info=b"hoard backup v1 segment key")
    nonce   = nonce prefix || segment number (4 bytes, big-endian) || last flag (0 or 1)
    ad      = header || context

Every segment but the last holds exactly ``SEGMENT`` bytes of plaintext; the
last holds 0 to ``SEGMENT`` and is the only one sealed with the flag set.
Hence decryption detects a flipped bit (tag), a swapped or dropped segment
(number), a cut at a segment boundary (no segment carries the flag) or in the
middle (tag), data appended after the end (the real last segment would then be
read as a middle one), a changed header and a wrong key. The per-backup subkey
makes nonce reuse across backups sealed with one data key a non-issue.

A segment is yielded only after its tag checks, but a stream cut short looks
valid up to the cut: callers must consume ``decrypt`` to its end before they
trust (act on) what it yielded.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"HOARDENC1"
SALT_SIZE = 16
PREFIX_SIZE = 7
HEADER_SIZE = len(MAGIC) + SALT_SIZE + PREFIX_SIZE
KEY_SIZE = 32
TAG_SIZE = 16
SEGMENT = 1024 * 1024  # plaintext bytes per segment
SEALED_SEGMENT = SEGMENT + TAG_SIZE
MAX_SEGMENTS = 2**32  # the counter is 4 bytes: 4 PiB per backup
_INFO = b"hoard backup v1 segment key"


class BackupCorrupted(ValueError):
    """The stored backup is not what Hoard wrote: damaged, cut, reordered,
    extended, or not sealed with this key. Never restore from it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"backup is corrupted or was tampered with: {reason}")
        self.reason = reason


def new_data_key() -> bytes:
    """A fresh 256-bit data key (one per project; stored sealed by the caller)."""
    return os.urandom(KEY_SIZE)


def encrypt(chunks: Iterable[bytes], key: bytes, *, context: bytes = b"") -> Iterator[bytes]:
    """Ciphertext of the plaintext ``chunks``: the header, then one sealed segment
    at a time. ``context`` (e.g. the object's key) is authenticated, not stored:
    decrypt must be given the same bytes."""
    header = MAGIC + os.urandom(SALT_SIZE) + os.urandom(PREFIX_SIZE)
    seal = _Segments(key, header, context)
    yield header
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        # Keep more than a segment back: only the end of input says which is last.
        while len(buf) > SEGMENT:
            yield seal.encrypt(buf, SEGMENT, last=False)
            del buf[:SEGMENT]
    yield seal.encrypt(buf, len(buf), last=True)


def decrypt(chunks: Iterable[bytes], key: bytes, *, context: bytes = b"") -> Iterator[bytes]:
    """Plaintext of ``encrypt``'s output, one authenticated segment at a time.

    Raises BackupCorrupted as soon as a segment fails, before yielding it, and at
    the end if the stream stops short of its last segment.
    """
    buf = bytearray()
    opened: _Segments | None = None
    for chunk in chunks:
        buf += chunk
        if opened is None:
            if len(buf) < HEADER_SIZE:
                continue
            opened = _Segments(key, _check_header(bytes(buf[:HEADER_SIZE])), context)
            del buf[:HEADER_SIZE]
        while len(buf) > SEALED_SEGMENT:
            yield opened.decrypt(buf, SEALED_SEGMENT, last=False)
            del buf[:SEALED_SEGMENT]
    if opened is None:
        raise BackupCorrupted(f"it is {len(buf)} bytes, shorter than its header")
    if len(buf) < TAG_SIZE:
        raise BackupCorrupted(f"it ends inside segment {opened.count} (truncated)")
    yield opened.decrypt(buf, len(buf), last=True)


def _check_header(header: bytes) -> bytes:
    if not header.startswith(MAGIC):
        raise BackupCorrupted("it does not start with Hoard's encryption header")
    return header


class _Segments:
    """Seals or opens consecutive segments of one stream, counting them."""

    def __init__(self, key: bytes, header: bytes, context: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a backup data key is {KEY_SIZE} bytes, not {len(key)}")
        salt = header[len(MAGIC):len(MAGIC) + SALT_SIZE]
        subkey = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt,
                      info=_INFO).derive(key)
        self._aead = AESGCM(subkey)
        self._prefix = header[len(MAGIC) + SALT_SIZE:HEADER_SIZE]
        self._ad = header + context
        self.count = 0

    def _nonce(self, last: bool) -> bytes:
        if self.count >= MAX_SEGMENTS:
            raise ValueError("a backup cannot exceed 2**32 segments")
        return self._prefix + struct.pack(">IB", self.count, int(last))

    # Both take the first ``n`` bytes of ``buf`` through a view: no copy of the segment.
    def encrypt(self, buf: bytearray, n: int, *, last: bool) -> bytes:
        with memoryview(buf)[:n] as view:
            sealed = self._aead.encrypt(self._nonce(last), view, self._ad)
        self.count += 1
        return sealed

    def decrypt(self, buf: bytearray, n: int, *, last: bool) -> bytes:
        try:
            with memoryview(buf)[:n] as view:
                plaintext = self._aead.decrypt(self._nonce(last), view, self._ad)
        except InvalidTag:
            raise BackupCorrupted(_diagnose(self.count, last)) from None
        self.count += 1
        return plaintext


def _diagnose(number: int, last: bool) -> str:
    if number == 0:
        return ("the first segment does not authenticate: wrong data key, changed "
                "header, or damaged data")
    where = "last segment" if last else "segment"
    return (f"{where} {number} does not authenticate (damaged, reordered, truncated "
            "or extended data)")
