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

What decryption cannot tell is a whole other backup sealed with the same data
key under the same object key: every segment of it authenticates. The 16-byte
tags are what the manifest's checksum hashes (with the header and the size,
see ``checksum``): a tag is a MAC of its segment's ciphertext under the
backup's subkey, so the sequence of tags commits to every stored byte, and
the checksum costs 16 bytes of hashing per MiB instead of the whole object.

A segment is yielded only after its tag checks, but a stream cut short looks
valid up to the cut: callers must consume ``decrypt`` to its end before they
trust (act on) what it yielded. ``checksum.verify()`` runs before the last
segment is yielded.

Copies: a plaintext chunk of exactly ``SEGMENT`` bytes (what the tool runners
read) and a stored piece cut as it was written are sealed or opened where
they lie; other chunkings are re-cut through one reused buffer (``cut``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import Protocol

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

Buffer = bytes | bytearray | memoryview  # what may flow through; memoryviews only between cuts


class BackupCorrupted(ValueError):
    """The stored backup is not what Hoard wrote: damaged, cut, reordered,
    extended, or not sealed with this key. Never restore from it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"backup is corrupted or was tampered with: {reason}")
        self.reason = reason


def new_data_key() -> bytes:
    """A fresh 256-bit data key (one per project; stored sealed by the caller)."""
    return os.urandom(KEY_SIZE)


class Checksum(Protocol):
    """Sees a stored object as it is cut: the header, then each sealed segment
    (``checksum.TagDigest`` is the one Hoard uses)."""

    def header(self, header: Buffer) -> None: ...

    def segment(self, sealed: Buffer, *, last: bool) -> None: ...

    def verify(self) -> None:
        """Raise BackupCorrupted unless the object seen so far is the one expected."""


def encrypt(chunks: Iterable[Buffer], key: bytes, *, context: bytes = b"",
            checksum: Checksum | None = None) -> Iterator[bytes]:
    """Ciphertext of the plaintext ``chunks``: the header, then one sealed segment
    per item, each also shown to ``checksum``. ``context`` (e.g. the object's
    key) is authenticated, not stored: decrypt must be given the same bytes.
    Chunks of exactly ``SEGMENT`` bytes are sealed as they are, others re-cut; a
    chunk must not change once handed over."""
    header = MAGIC + os.urandom(SALT_SIZE) + os.urandom(PREFIX_SIZE)
    seal = _Segments(key, header, context)
    if checksum is not None:
        checksum.header(header)
    yield header

    def sealed(plaintext: Buffer, last: bool) -> bytes:
        ciphertext = seal.encrypt(plaintext, last=last)
        if checksum is not None:
            checksum.segment(ciphertext, last=last)
        return ciphertext

    for plaintext, last in cut(chunks, SEGMENT):
        yield sealed(plaintext, last)
    if seal.count == 0:  # no plaintext at all: one empty segment, the last
        yield sealed(b"", True)


def decrypt(chunks: Iterable[Buffer], key: bytes, *, context: bytes = b"",
            checksum: Checksum | None = None) -> Iterator[bytes]:
    """Plaintext of ``encrypt``'s output, one authenticated segment at a time.

    Raises BackupCorrupted as soon as a segment fails, before yielding it, and at
    the end if the stream stops short of its last segment. ``checksum`` sees the
    header and every sealed segment, and its ``verify()`` runs before the last
    segment's plaintext is released. Input cut as ``encrypt`` yields it passes
    without copying.
    """
    pieces = cut(chunks, SEALED_SEGMENT, first=HEADER_SIZE)
    header, last = next(pieces, (b"", True))
    if len(header) < HEADER_SIZE:
        raise BackupCorrupted(f"it is {len(header)} bytes, shorter than its header")
    opened = _Segments(key, _check_header(bytes(header)), context)
    if checksum is not None:
        checksum.header(header)
    while not last:
        sealed, last = next(pieces)
        if len(sealed) < TAG_SIZE:
            raise BackupCorrupted(f"it ends inside segment {opened.count} (truncated)")
        plaintext = opened.decrypt(sealed, last=last)
        if checksum is not None:
            checksum.segment(sealed, last=last)
            if last:
                checksum.verify()
        yield plaintext
    if opened.count == 0:
        raise BackupCorrupted("it ends inside segment 0 (truncated)")


def cut(chunks: Iterable[Buffer], size: int, *,
        first: int | None = None) -> Iterator[tuple[memoryview, bool]]:
    """Re-cut a byte stream into ``first`` bytes (if given), then pieces of exactly
    ``size`` bytes, then the rest if any; never an empty piece. Each piece comes
    with whether it is the last, as soon as that is known: when the next byte
    has been seen, not the next piece.

    A piece inside one chunk is a view of it (no copy); one that spans chunks is
    copied into a buffer this generator reuses, so a piece is valid only until
    the next one is asked for: use it, do not keep it.
    """
    want = size if first is None else first
    buf: bytearray | None = None
    filled = 0
    ready: memoryview | None = None  # a whole piece; whether more follows is not known yet
    for chunk in chunks:
        if not len(chunk):
            continue
        if ready is not None:
            yield ready, False
            ready = None
        view = memoryview(chunk).cast("B")
        while view:
            if not filled and len(view) >= want:
                piece, view = view[:want], view[want:]
            else:
                if buf is None:
                    buf = bytearray(max(size, want))
                n = min(want - filled, len(view))
                buf[filled:filled + n] = view[:n]
                filled, view = filled + n, view[n:]
                if filled < want:
                    break
                piece, filled = memoryview(buf)[:want], 0
            want = size
            if view:
                yield piece, False
            else:
                ready = piece
    if ready is not None:
        yield ready, True
    elif filled:
        assert buf is not None
        yield memoryview(buf)[:filled], True


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

    def encrypt(self, plaintext: Buffer, *, last: bool) -> bytes:
        sealed = self._aead.encrypt(self._nonce(last), plaintext, self._ad)
        self.count += 1
        return sealed

    def decrypt(self, sealed: Buffer, *, last: bool) -> bytes:
        try:
            plaintext = self._aead.decrypt(self._nonce(last), sealed, self._ad)
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
