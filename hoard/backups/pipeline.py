"""Backups end to end: plaintext -> encrypt -> checksum -> store, and back.

``upload`` returns what the backup's manifest must record (key, stored size,
the checksum: a SHA-256 of the header and segment tags, see ``checksum``);
``download`` needs the checksum back. Each direction runs in two threads: the
source (the tool's output; the store's reads and decryption) is read ahead of
the rest by a few segments (``prefetch``), so neither side waits on the other. The data key
is the project's raw 32-byte key: sealing it at rest is the caller's job.
``store_from_url`` turns Hoard's configured backup URL into a BackupStore.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from hoard.backups.checksum import TagDigest
from hoard.backups.crypto import HEADER_SIZE, SEALED_SEGMENT, decrypt, encrypt
from hoard.backups.local import LocalStore
from hoard.backups.prefetch import prefetched
from hoard.backups.store import BackupStore, validate_key

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_OPTIONS = {"endpoint", "region"}


def upload(
    store: BackupStore,
    key: str,
    plaintext_chunks: Iterable[bytes],
    data_key: bytes,
    *,
    size_hint: int | None = None,
) -> dict[str, Any]:
    """Encrypt ``plaintext_chunks`` and store them under ``key``, streaming.

    The object key is bound into the encryption, so a backup only decrypts
    under the key it was written to (copies to another store keep their keys).
    Putting the same key again replaces the object atomically: a retried step
    may simply upload again.
    """
    context = validate_key(key).encode()
    plaintext = _Counting(plaintext_chunks)
    digest = TagDigest()
    stored = encrypt(prefetched(plaintext, name="backup-source"), data_key, context=context,
                     checksum=digest)
    written = store.put(key, stored, size_hint=size_hint)
    if written != digest.size:
        raise RuntimeError(f"store reported {written} bytes written, {digest.size} were sent")
    return {"key": key, "size": written, "sha256": digest.hexdigest(),
            "plaintext_size": plaintext.size}


def download(
    store: BackupStore, key: str, data_key: bytes, expected_sha256: str
) -> Iterator[bytes]:
    """The plaintext of the backup under ``key``, streaming.

    Each yielded chunk is authenticated, but a cut or substituted object is only
    known at the end (BackupCorrupted from the final ``next()``): restore into a
    scratch place and make it live only once this iterator is exhausted.
    ObjectNotFound is raised at once, not on iteration.
    """
    context = validate_key(key).encode()
    digest = TagDigest(expected_sha256)
    stored = store.get(key, first=HEADER_SIZE, size=SEALED_SEGMENT)  # as it was sealed
    return prefetched(decrypt(stored, data_key, context=context, checksum=digest),
                      name="backup-download")


def store_from_url(url: str, env: Mapping[str, str] | None = None) -> BackupStore:
    """``file:///abs/dir`` or ``s3://bucket[/prefix][?endpoint=URL&region=NAME]``.

    S3 credentials come from HOARD_S3_ACCESS_KEY / HOARD_S3_SECRET_KEY, else
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else boto3's own chain (instance
    profile, web identity); never from the URL, which may end up in logs.
    """
    env = os.environ if env is None else env
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError("a backup store URL has no #fragment")
    kind = BACKUP_STORES.get(parts.scheme)
    if kind is None:
        raise ValueError(f"unsupported backup store URL {url!r}: use "
                         f"{' or '.join(BACKUP_STORES[k].__doc__ or k for k in BACKUP_STORES)}")
    return kind(parts, env)


def _file_store(parts: SplitResult, env: Mapping[str, str]) -> BackupStore:
    """file:///path"""
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or parts.query or not path.startswith("/"):
        raise ValueError(f"use file:///absolute/path for a local backup store, not "
                         f"{parts.geturl()!r}")
    return LocalStore(Path(path))


def _s3_store(parts: SplitResult, env: Mapping[str, str]) -> BackupStore:
    """s3://bucket/prefix"""
    from hoard.backups.s3 import S3Store  # boto3 is imported only when S3 is used

    bucket, path, query = parts.netloc, parts.path, parts.query

    if "@" in bucket:
        raise ValueError("put S3 credentials in HOARD_S3_ACCESS_KEY / HOARD_S3_SECRET_KEY, "
                         "not in the URL")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - _S3_OPTIONS
    if unknown or any(len(values) != 1 for values in options.values()):
        raise ValueError(f"S3 URL options are endpoint and region, each at most once; "
                         f"got {sorted(options)}")
    endpoint = options.get("endpoint", [None])[0]
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"S3 endpoint must be an http(s) URL, not {endpoint!r}")
    access_key = env.get("HOARD_S3_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID")
    secret_key = env.get("HOARD_S3_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY")
    if bool(access_key) != bool(secret_key):
        raise ValueError("set both an S3 access key and its secret key, or neither")
    return S3Store(endpoint, bucket, access_key, secret_key,
                   region=options.get("region", ["us-east-1"])[0],
                   prefix=unquote(path).strip("/"))


class _Counting:
    """Counts the plaintext bytes going by (reported, not trusted)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            yield chunk


# Backup stores by URL scheme: a new kind is one function and one line here.
BACKUP_STORES: dict[str, Callable[[SplitResult, Mapping[str, str]], BackupStore]] = {
    "file": _file_store,
    "s3": _s3_store,
}
