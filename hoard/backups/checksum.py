"""The checksum a backup's manifest records (field ``sha256``), and its check.

``crypto.encrypt`` and ``crypto.decrypt`` show a ``TagDigest`` the stored
object as they cut it; on the way back, ``verify()`` runs before the last
segment's plaintext is released, so a substituted object yields no complete
restore.

What is hashed: SHA-256 over the stored object's header, then the 16-byte
AES-GCM tag of each of its segments in order, then the object's size (8 bytes,
big-endian). That is 16 bytes per MiB of backup, so the checksum costs nothing
next to the encryption, where a SHA-256 of every stored byte cost about twice
as much as AES-GCM itself.

Why that commits to every byte: each tag is the GCM authenticator of its
segment's ciphertext under the backup's subkey (HKDF of the project's data key
and the header's salt), with the segment's number and last flag in the nonce
and the header and object key as associated data (see ``crypto``). An object
that passes both this checksum and decryption has the recorded header (so the
same salt, subkey and nonces), the recorded size and number of segments, and
in every segment a ciphertext that authenticates against the recorded tag. A
different ciphertext with the same tag is a GCM forgery, which without the
subkey succeeds with probability about 2**-128 per attempt. So, for anyone who
does not hold the project's data key:

- a flipped, cut, reordered or appended byte fails decryption (as before);
- another genuine backup sealed with the same data key and put under the same
  object key (a replay or a swap) has a different header (a fresh random salt)
  and different tags: it fails this checksum, before its last segment is
  released.

What it does not cover, where a SHA-256 of the whole object did:

- Someone who holds the project's data key can build a different object with
  the recorded header and tags (GHASH is linear once its key is known). Such a
  party can already seal any data as a backup of that project; the data key is
  kept sealed in the state store, beside the manifests.
- Without the data key, recomputing the checksum (``scrub``) checks the
  header, the tags and the size, but not the ciphertext between the tags:
  scrubbing a stored backup for bit rot means decrypting it
  (``pipeline.download``, output discarded).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from hoard.backups.crypto import HEADER_SIZE, SEALED_SEGMENT, TAG_SIZE, BackupCorrupted, Buffer, cut

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class TagDigest:
    """The checksum of one stored object, fed by ``crypto`` as it cuts the object
    (``crypto.Checksum``). ``expected``: the manifest's value, for ``verify``."""

    def __init__(self, expected: str | None = None) -> None:
        if expected is not None and not _SHA256.fullmatch(expected):
            raise ValueError(f"not a SHA-256 hex digest: {expected!r}")
        self.expected = expected.lower() if expected is not None else None
        self._hash = hashlib.sha256()
        self.size = 0
        self.finished = False

    def header(self, header: Buffer) -> None:
        self._hash.update(header)
        self.size += len(header)

    def segment(self, sealed: Buffer, *, last: bool) -> None:
        self._hash.update(sealed[-TAG_SIZE:])
        self.size += len(sealed)
        if last:
            self._hash.update(self.size.to_bytes(8, "big"))
            self.finished = True

    def hexdigest(self) -> str:
        """The checksum of the whole object; refused before its last segment, when
        it would describe only a prefix."""
        if not self.finished:
            raise RuntimeError("the stream has not been read to its end")
        return self._hash.hexdigest()

    def verify(self) -> None:
        if self.expected is None:
            raise RuntimeError("no checksum to verify against")
        actual = self.hexdigest()
        if not hmac.compare_digest(actual, self.expected):
            raise BackupCorrupted(
                f"its checksum (SHA-256 of header, segment tags and size) is {actual}, "
                f"the manifest recorded {self.expected} ({self.size} bytes read)")


def scrub(stored: Iterable[Buffer], expected: str) -> int:
    """Check a stored object against its manifest's checksum without the data key
    (header, tags and size only: see above); return its size. Raises
    BackupCorrupted on a mismatch."""
    digest = TagDigest(expected)
    pieces = cut(stored, SEALED_SEGMENT, first=HEADER_SIZE)
    header, last = next(pieces, (b"", True))
    if len(header) < HEADER_SIZE or last:
        raise BackupCorrupted(f"it is {len(header)} bytes, too short for a backup")
    digest.header(header)
    for piece, last in pieces:
        digest.segment(piece, last=last)
    digest.verify()
    return digest.size
