"""Request limits at the API's front gate: a body over HOARD_MAX_BODY_BYTES is
refused with 413 before anything parses it, whether or not it says its length,
and the rest of it is never read (a 300 MB upload leaves Hoard's memory where it
was, and other requests are served meanwhile); JSON nested deeper than 32 levels
is refused with a problem that says so. No database server is needed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HoardServer, hoard_server, new_tenant

PROBLEM = "application/problem+json"
MIB = 1024 * 1024
VALID = {"name": "good-name", "engine": "postgresql", "size": "nano"}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def request_head(server: HoardServer, headers: dict[str, str]) -> bytes:
    lines = ["POST /v2/clusters HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Authorization: Bearer {ADMIN_TOKEN}", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and whatever body arrived (the server closes after a 413)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_too_large(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 413, body
    assert headers["content-type"] == PROBLEM
    problem = json.loads(body)
    assert problem["status"] == 413 and str(limit) in problem["detail"], problem


def send_chunked(sock: socket.socket, total: int, stop: threading.Event) -> int:
    """Send ``total`` bytes of a JSON-looking body in 64 KiB chunks; the bytes sent
    before the server stopped taking them."""
    piece = b" " * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    try:
        while sent < total and not stop.is_set():
            sock.sendall(chunk)
            sent += len(piece)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered 413 and closed: what we want
    return sent


@pytest.fixture(scope="module")
def tenant(hoard: HoardServer, admin: httpx.Client) -> Iterator[tuple[httpx.Client, str]]:
    """A tenant that can build nothing: every refusal must leave it empty."""
    token = new_tenant(admin, "limits", quotas={"clusters": 0, "nodes": 0, "storage_gb": 0})
    with hoard.client(token) as client:
        yield client, token


def clusters_of(client: httpx.Client) -> list[str]:
    return [c["id"] for c in client.get("/v2/clusters").json()["clusters"]]


def test_declared_length_over_the_limit_is_413_before_any_byte_is_read(
    hoard: HoardServer
) -> None:
    with socket.create_connection(("127.0.0.1", hoard.port)) as sock:
        sock.sendall(request_head(hoard, {"Content-Length": str(300 * MIB)}))
        start = time.monotonic()
        assert_too_large(*read_response(sock, timeout=5), limit=MIB)
        assert time.monotonic() - start < 2


def test_chunked_300_mb_is_cut_off_and_memory_stays_flat(
    hoard: HoardServer, tenant: tuple[httpx.Client, str]
) -> None:
    """No Content-Length: the gate counts what it reads and stops past the limit.
    Meanwhile another request is answered promptly, and Hoard's memory does not
    grow with the upload."""
    assert hoard.proc is not None
    client, _ = tenant
    client.get("/v2")  # warm: the first request allocates caches of its own
    before = rss_bytes(hoard.proc.pid)
    stop = threading.Event()
    sent: list[int] = []
    with socket.create_connection(("127.0.0.1", hoard.port)) as sock:
        sock.sendall(request_head(hoard, {"Transfer-Encoding": "chunked"}))
        sender = threading.Thread(target=lambda: sent.append(send_chunked(sock, 300 * MIB,
                                                                           stop)))
        sender.start()
        try:
            # While the upload is under way, the API answers others at once.
            for _ in range(5):
                start = time.monotonic()
                assert client.get("/v2/clusters").status_code == 200
                assert time.monotonic() - start < 1.0
            assert_too_large(*read_response(sock, timeout=10), limit=MIB)
        finally:
            stop.set()
            sender.join(timeout=30)
    assert not sender.is_alive()
    assert sent and sent[0] < 300 * MIB, "the server read the whole upload"
    grown = rss_bytes(hoard.proc.pid) - before
    assert grown < 30 * MIB, f"Hoard grew by {grown / MIB:.0f} MiB during the upload"
    assert clusters_of(client) == []


def test_a_slow_upload_does_not_hold_up_other_requests(
    hoard: HoardServer, tenant: tuple[httpx.Client, str]
) -> None:
    client, _ = tenant
    with socket.create_connection(("127.0.0.1", hoard.port)) as sock:
        sock.sendall(request_head(hoard, {"Transfer-Encoding": "chunked"}))
        for _ in range(5):  # a trickle, well under the limit, never finished in time
            sock.sendall(b"1\r\n \r\n")
            start = time.monotonic()
            assert client.get("/v2/engines").status_code == 200
            assert time.monotonic() - start < 1.0
            time.sleep(0.1)


def test_the_limit_is_a_setting() -> None:
    """HOARD_MAX_BODY_BYTES: a body just under it reaches validation, one just over
    it does not, with or without Content-Length."""
    with hoard_server({"HOARD_MAX_BODY_BYTES": "4096"}) as server, server.client() as client:
        padded = {**VALID, "name": "Bad_Name", "version": "x" * 3900}
        under = client.post("/v2/clusters", json=padded)
        assert under.status_code == 422 and under.json()["title"] == "Invalid input"
        over = client.post("/v2/clusters", json={**padded, "version": "x" * 4100})
        assert over.status_code == 413 and "4096" in over.json()["detail"]
        chunks = iter([json.dumps({**padded, "version": "x" * 4100}).encode()])
        streamed = client.post("/v2/clusters", content=chunks,
                               headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413, streamed.text
        assert streamed.headers["content-type"] == PROBLEM
        assert client.get("/v2/clusters").json()["clusters"] == []


def nested(depth: int) -> bytes:
    """A cluster body whose ``name`` nests arrays so the whole is ``depth`` deep."""
    return b'{"name": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_json_nested_too_deep_is_refused_clearly(
    tenant: tuple[httpx.Client, str], depth: int
) -> None:
    client, _ = tenant
    response = client.post("/v2/clusters", content=nested(depth),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["title"] == "JSON too deeply nested"
    assert problem["detail"].startswith("JSON nested deeper than 32 levels")
    assert clusters_of(client) == []


def test_json_as_deep_as_the_limit_reaches_validation(
    tenant: tuple[httpx.Client, str]
) -> None:
    client, _ = tenant
    response = client.post("/v2/clusters", content=nested(32),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["title"] == "Invalid input"
    assert next(e["field"] for e in response.json()["errors"]) == "name"


def test_a_megabyte_of_open_brackets_is_refused_without_stalling(
    tenant: tuple[httpx.Client, str]
) -> None:
    client, _ = tenant
    start = time.monotonic()
    response = client.post("/v2/clusters", content=b"[" * (MIB - 1),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "deeper than 32" in response.json()["detail"]
    assert time.monotonic() - start < 5
