"""S3Store: backup objects in any S3-compatible store (AWS S3, MinIO, Ceph RGW,
moto), uploaded in parts so memory holds one part, never the whole object.

Compatibility choices: path-style addressing (no wildcard DNS needed), and
botocore's newer default CRC checksums turned off in favour of Content-MD5 on
every part, which every S3 implementation verifies on arrival. End-to-end
integrity is the manifest's SHA-256 and the AEAD tags, not the transport.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from hoard.backups.store import (
    READ_CHUNK,
    BackupStore,
    ObjectNotFound,
    Unfinished,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # S3's minimum is 5 MiB for every part but the last
MAX_PARTS = 10_000  # S3's limit per multipart upload
MAX_PART_SIZE = 5 * 1024 * MIB
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Store(BackupStore):
    """Objects under ``prefix`` in ``bucket``. Without keys, boto3's own chain
    (instance profile, IRSA web identity, ...) supplies the credentials."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        region: str = "us-east-1",
        prefix: str = "",
        part_size: int = PART_SIZE,
    ) -> None:
        if prefix:
            validate_key(prefix.strip("/"))
        if not 5 * MIB <= part_size <= MAX_PART_SIZE:
            raise ValueError("part_size must be between 5 MiB and 5 GiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix else ""
        self.part_size = part_size
        self.endpoint_url = endpoint_url
        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )

    def __repr__(self) -> str:  # never shows credentials
        return (f"S3Store(endpoint={self.endpoint_url!r}, bucket={self.bucket!r}, "
                f"prefix={self.prefix!r})")

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _part_size_for(self, size_hint: int | None) -> int:
        """Parts big enough that ``size_hint`` bytes fit in 9,000 of them (of 10,000)."""
        if not size_hint:
            return self.part_size
        wanted = math.ceil(size_hint / 9_000 / MIB) * MIB
        return min(max(self.part_size, wanted), MAX_PART_SIZE)

    def put(self, key: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        name = self._name(key)
        part_size = self._part_size_for(size_hint)
        buf = bytearray()  # the one part held in memory
        upload: _Multipart | None = None
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                view = memoryview(chunk)
                while view:
                    take = part_size - len(buf)
                    buf += view[:take]
                    view = view[take:]
                    if len(buf) == part_size:
                        upload = upload or _Multipart(self.client, self.bucket, name)
                        upload.send(buf)
                        buf = bytearray()
            if upload is None:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buf),
                                       ContentMD5=_md5(buf))
            else:
                if buf:
                    upload.send(buf)
                upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return total

    def get(self, key: str, *, first: int = 0, size: int = READ_CHUNK) -> Iterator[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise ObjectNotFound(key) from exc
            raise
        return _stream(response["Body"], first, size)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix):]
                try:  # objects not written by Hoard may share the bucket
                    keys.append(validate_key(key))
                except ValueError:
                    continue
        return sorted(keys)

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise ObjectNotFound(key) from exc
            raise
        return int(head["ContentLength"])

    def unfinished(self) -> Sequence[Unfinished]:
        found: list[Unfinished] = []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                try:  # uploads not begun by Hoard may share the bucket
                    key = validate_key(upload["Key"][len(self.prefix):])
                except ValueError:
                    continue
                found.append(Unfinished(key, upload["UploadId"]))
        return found

    def abort(self, upload: Unfinished) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._name(upload.key),
                                               UploadId=upload.upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise


class _Multipart:
    """One multipart upload: created on the first full part, completed or aborted."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def send(self, data: bytearray) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise ValueError(
                f"object {self.key!r} needs more than {MAX_PARTS} parts; "
                "pass a size_hint to put() or a larger part_size")
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
            Body=data, ContentMD5=_md5(data))
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        """Best effort: if even this fails, the store sweeper (or a bucket lifecycle rule
        AbortIncompleteMultipartUpload) removes the parts later."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:
            log.warning("could not abort multipart upload %s of %s", self.upload_id,
                        self.key, exc_info=True)


def _stream(body: Any, first: int, size: int) -> Iterator[bytes]:
    try:
        if first and (chunk := body.read(first)):
            yield chunk
        yield from body.iter_chunks(size)
    finally:  # also when the caller abandons the iterator
        body.close()


def _md5(data: bytes | bytearray) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING
