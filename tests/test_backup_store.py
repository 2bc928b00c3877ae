"""Backup stores, encryption and checksums, for real: one suite runs against a
local directory and against S3 (moto's server on loopback, spoken to over HTTP
by boto3), so both backends keep the same contract."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest

from hoard.backups.checksum import TagDigest, scrub
from hoard.backups.crypto import (
    HEADER_SIZE,
    SEALED_SEGMENT,
    SEGMENT,
    TAG_SIZE,
    BackupCorrupted,
    cut,
    decrypt,
    encrypt,
    new_data_key,
)
from hoard.backups.local import LocalStore
from hoard.backups.pipeline import download, store_from_url, upload
from hoard.backups.prefetch import prefetched
from hoard.backups.s3 import PART_SIZE, S3Store
from hoard.backups.store import (
    MAX_COMPONENT_LENGTH,
    MAX_KEY_LENGTH,
    BackupStore,
    ObjectNotFound,
    Unfinished,
)
from hoard.backups.sweeper import Sweeper
from tests.conftest import free_port

MIB = 1024 * 1024
BUCKET = "hoard-backups"
S3_ENV = {"HOARD_S3_ACCESS_KEY": "testing", "HOARD_S3_SECRET_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's S3 server in a subprocess on a free loopback port, with one bucket."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}")
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Backend:
    store: BackupStore
    url: str  # the same store, as store_from_url would be configured

    def tamper(self, key: str, data: bytes) -> None:
        """Overwrite the stored object behind Hoard's back, as an attacker would."""
        if isinstance(self.store, LocalStore):
            (self.store.root / key).write_bytes(data)
        else:
            assert isinstance(self.store, S3Store)
            self.store.client.put_object(Bucket=BUCKET, Key=self.store.prefix + key, Body=data)

    def pending_uploads(self) -> list[str]:
        """Partial uploads left behind: temporary files, or S3 multipart uploads."""
        if isinstance(self.store, LocalStore):
            return [str(p) for p in self.store.root.rglob("*") if p.is_file()
                    and p.name.startswith(".")]
        assert isinstance(self.store, S3Store)
        uploads = self.store.client.list_multipart_uploads(
            Bucket=BUCKET, Prefix=self.store.prefix)
        return [u["Key"] for u in uploads.get("Uploads", [])]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "store"
        return Backend(LocalStore(root), f"file://{root}")
    endpoint = request.getfixturevalue("moto_s3")
    prefix = f"test-{uuid.uuid4().hex[:12]}"  # each test its own corner of the bucket
    store = S3Store(endpoint, BUCKET, "testing", "testing", prefix=prefix)
    return Backend(store, f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1")


def generated(total: int, chunk: int = 256 * 1024, seed: int = 7) -> Iterator[bytes]:
    """``total`` reproducible pseudo-random bytes, made lazily chunk by chunk."""
    rng = random.Random(seed)
    while total > 0:
        n = min(chunk, total)
        yield rng.randbytes(n)
        total -= n


def sha(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def peak_memory(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- the store contract ---------------------------------------------------------

def test_roundtrip_streams_in_bounded_memory(backend: Backend) -> None:
    store, total = backend.store, 20 * MIB
    written = 0

    def put() -> None:
        nonlocal written
        written = store.put("proj/cluster/full.tar", generated(total))

    put_peak = peak_memory(put)
    got_sha = ""

    def get() -> None:
        nonlocal got_sha
        got_sha = sha(store.get("proj/cluster/full.tar"))

    get_peak = peak_memory(get)
    assert written == total == store.size("proj/cluster/full.tar")
    assert got_sha == sha(generated(total))
    # One part (S3) or one chunk (local) in flight, never the 20 MiB object.
    bound = PART_SIZE + 4 * MIB if isinstance(store, S3Store) else 2 * MIB
    assert put_peak < min(bound, total), f"put peaked at {put_peak} bytes"
    assert get_peak < 4 * MIB, f"get peaked at {get_peak} bytes"


@pytest.mark.parametrize("size", [0, 5, PART_SIZE, PART_SIZE + 1])
def test_sizes_around_the_part_boundary(backend: Backend, size: int) -> None:
    assert backend.store.put("k", generated(size, chunk=3 * MIB)) == size
    assert backend.store.size("k") == size
    chunks = list(backend.store.get("k"))
    assert all(len(c) <= MIB for c in chunks)
    assert sha(chunks) == sha(generated(size))
    framed = list(backend.store.get("k", first=34, size=MIB + 16))  # as a backup is sealed
    assert sha(framed) == sha(generated(size))
    lengths = [min(size, 34)] * (size > 0) + [
        min(MIB + 16, size - at) for at in range(34, size, MIB + 16)]
    assert [len(c) for c in framed] == lengths
    assert backend.pending_uploads() == []


def test_list_exists_size_delete(backend: Backend) -> None:
    store = backend.store
    keys = ["p1/c1/b1", "p1/c1/b2", "p1/c2/b1", "p2/x", "top"]
    for key in reversed(keys):
        store.put(key, [key.encode()])
    assert store.list() == keys
    assert store.list("p1/") == keys[:3]
    assert store.list("p1/c1/b") == keys[:2]
    assert store.list("p1/c") == keys[:3]
    assert store.list("nothing/") == []
    assert store.exists("p2/x") and not store.exists("p2/y") and not store.exists("p1")
    assert store.size("top") == 3
    store.put("top", [b"replaced, longer"])
    assert b"".join(store.get("top")) == b"replaced, longer"

    store.delete("p2/x")
    store.delete("p2/x")  # idempotent
    store.delete("never/was")
    assert not store.exists("p2/x")
    assert store.list("p2/") == []
    with pytest.raises(ObjectNotFound):
        store.get("p2/x")
    with pytest.raises(ObjectNotFound):
        store.size("p2/x")
    for prefix_only in ("p1", "p1/c1"):  # a prefix of keys is not an object
        assert not store.exists(prefix_only)
        with pytest.raises(ObjectNotFound):
            store.get(prefix_only)
        with pytest.raises(ObjectNotFound):
            store.size(prefix_only)


@pytest.mark.parametrize("fail_after", [MIB, 10 * MIB])
def test_interrupted_put_leaves_nothing(backend: Backend, fail_after: int) -> None:
    store = backend.store
    store.put("db/backup", [b"the previous, complete backup"])

    def dies_midway() -> Iterator[bytes]:
        yield from generated(fail_after)
        raise RuntimeError("pg_basebackup died")

    with pytest.raises(RuntimeError, match="pg_basebackup died"):
        store.put("db/backup", dies_midway())
    with pytest.raises(RuntimeError):
        store.put("db/new", dies_midway())
    assert store.list() == ["db/backup"]
    assert b"".join(store.get("db/backup")) == b"the previous, complete backup"
    assert backend.pending_uploads() == []


class FakeClock:
    """The sweeper's clock, moved by hand (the store under it is real)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sweeper_removes_uploads_of_a_killed_writer(backend: Backend) -> None:
    """kill -9 in the middle of a put: no object appears, and the sweeper aborts the
    upload once it has seen it unfinished for its grace period, by its own clock
    (moto reports every upload as begun in 2010: a store's time is never used)."""
    script = (
        "import os, sys\n"
        "from hoard.backups.pipeline import store_from_url\n"
        "def chunks():\n"
        "    for _ in range(12):\n"
        "        yield b'x' * (1024 * 1024)\n"
        "    os._exit(9)\n"
        "store_from_url(sys.argv[1]).put('crashed/backup', chunks())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, backend.url],
                          env={**os.environ, **S3_ENV}, timeout=60, check=False)
    assert proc.returncode == 9
    assert backend.store.list() == []
    assert [u.key for u in backend.store.unfinished()] == ["crashed/backup"]
    clock = FakeClock()
    sweeper = Sweeper(backend.store, grace=3600, clock=clock)
    assert sweeper.once() == []  # first seen now
    clock.now = 3599
    assert sweeper.once() == []
    clock.now = 3600
    assert [u.key for u in sweeper.once()] == ["crashed/backup"]
    assert backend.pending_uploads() == []
    assert backend.store.unfinished() == []
    backend.store.abort(Unfinished("crashed/backup", "gone"
                                   if isinstance(backend.store, S3Store)
                                   else ".backup.0123456789abcdef.tmp"))  # already gone


def test_sweeper_leaves_a_live_upload_alone(backend: Backend) -> None:
    """A put still running within the grace period is not touched, and completes."""
    clock = FakeClock()
    sweeper = Sweeper(backend.store, grace=60, clock=clock)
    halfway, go_on = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        for index in range(12):
            if index == 10:
                halfway.set()
                go_on.wait(30)
            yield b"y" * (1024 * 1024)

    writer = threading.Thread(target=backend.store.put, args=("live/backup", slow()))
    writer.start()
    try:
        assert halfway.wait(30)
        assert [u.key for u in backend.store.unfinished()] == ["live/backup"]
        assert sweeper.once() == []
        clock.now = 59
        assert sweeper.once() == []
    finally:
        go_on.set()
        writer.join(30)
    assert backend.store.size("live/backup") == 12 * 1024 * 1024
    clock.now = 1000
    assert sweeper.once() == [] and sweeper.first_seen == {}


def test_abort_refuses_names_the_store_did_not_make(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("a/b", [b"kept"])
    for bad in ("b", "../b", ".b.tmp", ".b.0123456789abcdef.tmp/../../b",
                "./../b.0123456789abcdef.tmp"):
        with pytest.raises(ValueError):
            store.abort(Unfinished("a/b", bad))
    assert b"".join(store.get("a/b")) == b"kept"


BAD_KEYS = ["../x", "/abs", "a//b", "", "a/../b", "x\x00", "a/", ".hidden", "a/./b",
            "a b", "a\n", "a\\b", "é", "x" * (MAX_KEY_LENGTH + 1),
            "x" * (MAX_COMPONENT_LENGTH + 1)]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected_before_any_work(backend: Backend, key: str) -> None:
    store = backend.store
    consumed = []

    def chunks() -> Iterator[bytes]:
        consumed.append(True)
        yield b"data"

    for call in (lambda: store.put(key, chunks()), lambda: store.get(key),
                 lambda: store.exists(key), lambda: store.delete(key),
                 lambda: store.size(key), lambda: store.list(key + "/")):
        with pytest.raises(ValueError, match="invalid backup key"):
            call()
    assert consumed == []
    assert store.list() == []


def test_longest_key_is_accepted(backend: Backend) -> None:
    key = "/".join(["a" * MAX_COMPONENT_LENGTH, "b" * MAX_COMPONENT_LENGTH, "c" * 110])
    assert len(key) == MAX_KEY_LENGTH
    backend.store.put(key, [b"1"])
    assert backend.store.list() == [key]


# --- encryption and checksums end to end -------------------------------------------

KEY = new_data_key()
MARKER = b"CREATE TABLE customers (card_number text); -- very secret "
PLAINTEXT = (MARKER * (int(3.5 * SEGMENT) // len(MARKER) + 1))[: int(3.5 * SEGMENT)]  # 4 segments


def stored_bytes(store: BackupStore, key: str) -> bytes:
    return b"".join(store.get(key))


def checksum(stored: bytes) -> str:
    """The manifest's checksum, computed here from the format's description:
    SHA-256 of the header, each segment's tag, and the object's size."""
    tags = b"".join(stored[end - TAG_SIZE:end] for end in
                    [*range(HEADER_SIZE + SEALED_SEGMENT, len(stored), SEALED_SEGMENT),
                     len(stored)])
    return hashlib.sha256(stored[:HEADER_SIZE] + tags + len(stored).to_bytes(8, "big")).hexdigest()


def test_pipeline_roundtrip_encrypts(backend: Backend) -> None:
    store = backend.store
    chunks = [PLAINTEXT[i:i + 100_000] for i in range(0, len(PLAINTEXT), 100_000)]
    meta = upload(store, "p/c/base.tar", iter(chunks), KEY)
    stored = stored_bytes(store, "p/c/base.tar")
    assert meta == {"key": "p/c/base.tar", "size": len(stored),
                    "sha256": checksum(stored),
                    "plaintext_size": len(PLAINTEXT)}
    assert len(stored) == HEADER_SIZE + len(PLAINTEXT) + 4 * 16  # header + one tag a segment
    assert MARKER[:16] not in stored  # encryption really happened
    assert b"".join(download(store, "p/c/base.tar", KEY, meta["sha256"])) == PLAINTEXT


def test_pipeline_streams_in_bounded_memory(backend: Backend) -> None:
    store, total = backend.store, 20 * MIB
    meta: dict[str, object] = {}
    up = peak_memory(lambda: meta.update(upload(store, "big", generated(total), KEY)))
    got = ""

    def down() -> None:
        nonlocal got
        got = sha(download(store, "big", KEY, str(meta["sha256"])))

    assert peak_memory(down) < 8 * MIB
    assert got == sha(generated(total))
    assert up < (PART_SIZE if isinstance(store, S3Store) else 0) + 6 * MIB


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _segment(i: int) -> slice:
    start = HEADER_SIZE + i * SEALED_SEGMENT
    return slice(start, start + SEALED_SEGMENT)


def _swap(data: bytes, i: int, j: int) -> bytes:
    parts = bytearray(data)
    parts[_segment(i)], parts[_segment(j)] = data[_segment(j)], data[_segment(i)]
    return bytes(parts)


# name -> (how the stored object is damaged, most plaintext bytes that may come out)
TAMPERING: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "bit flip in segment 2": (lambda d: _flip(d, _segment(2).start + 1000), 2 * SEGMENT),
    "bit flip in the last tag": (lambda d: _flip(d, len(d) - 1), 3 * SEGMENT),
    "changed header": (lambda d: _flip(d, 12), 0),
    "segments 1 and 2 swapped": (lambda d: _swap(d, 1, 2), SEGMENT),
    "segment 1 dropped": (lambda d: d[:_segment(1).start] + d[_segment(2).start:], SEGMENT),
    "last segment dropped": (lambda d: d[:_segment(3).start], 2 * SEGMENT),
    "cut mid-segment": (lambda d: d[:_segment(2).start + 5000], 2 * SEGMENT),
    "cut inside the header": (lambda d: d[:20], 0),
    "data appended": (lambda d: d + b"\x00" * 100, 3 * SEGMENT),
    "a whole segment appended": (lambda d: d + d[_segment(1)], 3 * SEGMENT),
}


@pytest.mark.parametrize("damage", list(TAMPERING))
def test_tampering_is_detected(backend: Backend, damage: str) -> None:
    store = backend.store
    meta = upload(store, "p/c/base.tar", [PLAINTEXT], KEY)
    mutate, allowed = TAMPERING[damage]
    backend.tamper("p/c/base.tar", mutate(stored_bytes(store, "p/c/base.tar")))

    # Through the pipeline (checksum then decryption), and by decryption alone.
    for stream in (lambda: download(store, "p/c/base.tar", KEY, meta["sha256"]),
                   lambda: decrypt(store.get("p/c/base.tar"), KEY, context=b"p/c/base.tar")):
        out = bytearray()
        with pytest.raises(BackupCorrupted, match="backup is corrupted or was tampered with"):
            for chunk in stream():
                out += chunk
        assert len(out) <= allowed, "plaintext came out past the corruption"
        assert out == PLAINTEXT[:len(out)]


def test_wrong_key_yields_nothing(backend: Backend) -> None:
    meta = upload(backend.store, "k", [PLAINTEXT], KEY)
    out = []
    with pytest.raises(BackupCorrupted, match="wrong data key"):
        out.extend(download(backend.store, "k", new_data_key(), meta["sha256"]))
    assert out == []


def test_backup_moved_to_another_key_does_not_decrypt(backend: Backend) -> None:
    store = backend.store
    upload(store, "project-a/base.tar", [PLAINTEXT], KEY)
    stored = stored_bytes(store, "project-a/base.tar")
    store.put("project-b/base.tar", [stored])
    with pytest.raises(BackupCorrupted, match="first segment"):
        next(download(store, "project-b/base.tar", KEY, checksum(stored)))


def test_substituted_backup_fails_the_manifest_checksum(backend: Backend) -> None:
    """Another genuine backup (same key, same data key) put in place of the one the
    manifest describes authenticates segment by segment: the SHA-256 catches it, and
    its last segment is never released."""
    store = backend.store
    meta = upload(store, "base.tar", [PLAINTEXT], KEY)
    other = PLAINTEXT[::-1]
    upload(store, "base.tar", [other], KEY)
    out = bytearray()
    with pytest.raises(BackupCorrupted, match="checksum"):
        for chunk in download(store, "base.tar", KEY, meta["sha256"]):
            out += chunk
    assert len(out) == 3 * SEGMENT and out == other[:len(out)]


@pytest.mark.parametrize("where", ["segment 0", "segment 2", "last segment", "whole object"])
def test_checksum_and_tags_cover_every_stored_byte(backend: Backend, where: str) -> None:
    """The checksum hashes only the header and the tags: a flipped ciphertext byte
    keeps it and is refused by its segment's tag; another valid backup of the
    very same plaintext (same data key, same object key) in its place keeps every
    tag valid and is refused by the checksum. No plaintext of the last segment
    comes out of either."""
    store = backend.store
    meta = upload(store, "p/c/base.tar", [PLAINTEXT], KEY)
    stored = stored_bytes(store, "p/c/base.tar")
    if where == "whole object":
        upload(store, "p/c/base.tar", [PLAINTEXT], KEY)
        assert checksum(stored_bytes(store, "p/c/base.tar")) != meta["sha256"]
        refused, released = "checksum", 3 * SEGMENT
    else:
        segment = 3 if where == "last segment" else int(where[-1])
        at = _segment(segment).start + 12345  # ciphertext, not its tag
        backend.tamper("p/c/base.tar", _flip(stored, at))
        assert checksum(stored_bytes(store, "p/c/base.tar")) == meta["sha256"]
        refused, released = "does not authenticate", segment * SEGMENT
    out = bytearray()
    with pytest.raises(BackupCorrupted, match=refused):
        for chunk in download(store, "p/c/base.tar", KEY, meta["sha256"]):
            out += chunk
    assert len(out) == released and out == PLAINTEXT[:released]


def test_missing_backup_is_reported_at_once(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound):
        download(backend.store, "nope", KEY, "0" * 64)


# --- building blocks ------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT])
def test_encrypt_decrypt_any_size_and_chunking(size: int) -> None:
    data = os.urandom(size)
    sealed = b"".join(encrypt(iter([data[:7], data[7:]]), KEY))
    segments = max(1, -(-size // SEGMENT))
    assert len(sealed) == HEADER_SIZE + size + 16 * segments
    odd = [sealed[i:i + 77_777] for i in range(0, len(sealed), 77_777)]
    assert b"".join(decrypt(iter(odd), KEY)) == data
    assert sealed != b"".join(encrypt([data], KEY))  # a fresh salt and nonce every time


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        list(encrypt([b"x"], b"short key"))
    with pytest.raises(BackupCorrupted, match="Hoard's encryption header"):
        list(decrypt([b"PLAINTEXT, NOT A BACKUP" * 10], KEY))
    with pytest.raises(BackupCorrupted, match="shorter than its header"):
        list(decrypt([], KEY))
    with pytest.raises(ValueError, match="SHA-256"):
        download(LocalStore(tmp_path), "k", KEY, "not-a-digest")


def test_tag_digest_and_scrub() -> None:
    digest = TagDigest()
    sealed = list(encrypt([PLAINTEXT], KEY, checksum=digest))
    assert [len(p) for p in sealed] == [HEADER_SIZE] + [SEALED_SEGMENT] * 3 + [
        SEGMENT // 2 + TAG_SIZE]
    stored = b"".join(sealed)
    assert digest.size == len(stored) and digest.hexdigest() == checksum(stored)
    with pytest.raises(RuntimeError):
        TagDigest().hexdigest()  # nothing, or only a prefix, has gone by
    with pytest.raises(ValueError, match="SHA-256"):
        TagDigest("not-a-digest")
    # Without the key: header, tags and size, however the object is chunked.
    odd = [stored[i:i + 77_777] for i in range(0, len(stored), 77_777)]
    assert scrub(odd, checksum(stored).upper()) == len(stored)
    for damaged in (stored[:-1] + b"?", stored[:-5], stored + b"\0", stored[:40]):
        with pytest.raises(BackupCorrupted):
            scrub([damaged], checksum(stored))
    # ...which cannot see inside the ciphertext: decryption does.
    assert scrub([_flip(stored, 5000)], checksum(stored)) == len(stored)


@pytest.mark.parametrize("size", [0, 1, 5, 6, 7, 11, 12])
@pytest.mark.parametrize("chunking", [[1], [2, 3], [5], [6], [12], [4, 0, 8]])
def test_cut_any_chunking(size: int, chunking: list[int]) -> None:
    data = bytes(range(size))
    chunks, at = [], 0
    while at < size:
        for n in chunking:
            chunks.append(data[at:at + n])
            at += n
    got = [(bytes(p), last) for p, last in cut(chunks, 3, first=2)]  # views: copy them
    assert b"".join(p for p, _ in got) == data
    assert [len(p) for p, _ in got] == [min(size, 2)] * (size > 0) + [
        min(3, size - i) for i in range(2, size, 3)]
    assert [last for _, last in got] == [False] * (len(got) - 1) + [True] * bool(got)


def test_prefetched_keeps_order_errors_and_closes_its_source() -> None:
    assert list(prefetched(iter(range(100)), depth=2)) == list(range(100))
    closed = []

    def source(fail: bool) -> Iterator[int]:
        try:
            yield from range(5)
            if fail:
                raise OSError("tool died")
            yield from range(5, 1000)
        finally:
            closed.append(threading.current_thread().name)

    got = []
    with pytest.raises(OSError, match="tool died"):
        got.extend(prefetched(source(True), name="reader"))
    assert got == list(range(5)) and closed == ["reader"]
    early = prefetched(source(False), depth=3, name="reader")
    assert [next(early) for _ in range(3)] == [0, 1, 2]
    early.close()  # the consumer gives up: the producer stops and closes its source
    assert closed == ["reader", "reader"]
    assert not [t for t in threading.enumerate() if t.name == "reader"]


def test_store_from_url(tmp_path: Path) -> None:
    local = store_from_url(f"file://{tmp_path}/backups")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "backups"
    s3 = store_from_url("s3://my-bucket/hoard/prod?endpoint=http://127.0.0.1:9000"
                        "&region=eu-west-1", env=S3_ENV)
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("my-bucket", "hoard/prod/",
                                                       "http://127.0.0.1:9000")
    assert s3.client.meta.region_name == "eu-west-1"
    assert "testing" not in repr(s3)
    for bad in ["http://example.com/x", "ftp://host/x", "file://host/x", "file:relative",
                "s3://Bad_Bucket", "s3://bucket?foo=1", "s3://bucket?region=a&region=b",
                "s3://key:secret@bucket", "s3://bucket?endpoint=file:///etc",
                "s3://bucket/../x", f"file://{tmp_path}#frag", "/just/a/path"]:
        with pytest.raises(ValueError):
            store_from_url(bad, env=S3_ENV)
    with pytest.raises(ValueError, match="both"):
        store_from_url("s3://bucket", env={"AWS_ACCESS_KEY_ID": "only-half"})
