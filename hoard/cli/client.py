"""A small HTTP client for the /v2 API that turns problem+json into readable errors."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{title} ({status}): {detail}")
        self.status = status


class Client:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = (url or os.environ.get("HOARD_URL") or "http://127.0.0.1:8080").rstrip("/")
        token = token or os.environ.get("HOARD_TOKEN", "")
        self._http = httpx.Client(
            base_url=self.url, timeout=30.0,
            # Drop idle connections before the server does (uvicorn: after 5 s), so a
            # request never goes out on a connection the server is closing.
            limits=httpx.Limits(keepalive_expiry=2.0),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, "Cannot reach Hoard", f"{self.url}: {exc}") from None
        if response.status_code >= 400:
            self._raise(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """The lines of a streamed answer (NDJSON) as they arrive; no read timeout,
        since a followed log may be quiet for long."""
        try:
            with self._http.stream("GET", path, params=params,
                                   timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise ApiError(0, "Cannot reach Hoard", f"{self.url}: {exc}") from None

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            raise ApiError(response.status_code, "Error", response.text) from None
        raise ApiError(response.status_code, body.get("title", "Error"),
                       body.get("detail", response.text))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def ca_file(self, url: str = "/v2/ca.pem") -> Path:
        """Hoard's CA certificate, fetched from the API and kept in
        ``~/.cache/hoard/<host>-<port>/ca.pem`` (``$XDG_CACHE_HOME`` if set), so the
        engines' clients can verify endpoints. Fetched each time (it is small):
        the file is rewritten only when the CA has changed."""
        try:
            response = self._http.get(url)
        except httpx.TransportError as exc:
            raise ApiError(0, "Cannot reach Hoard", f"{self.url}: {exc}") from None
        if response.status_code != 200 or b"BEGIN CERTIFICATE" not in response.content:
            raise ApiError(response.status_code, "No CA certificate", f"GET {url}")
        parts = urlsplit(self.url)
        key = f"{parts.hostname}-{parts.port or (443 if parts.scheme == 'https' else 80)}"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = cache / "hoard" / re.sub(r"[^A-Za-z0-9.-]", "_", key) / "ca.pem"
        if not path.exists() or path.read_bytes() != response.content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(response.content)
            tmp.replace(path)  # atomic: a client never reads half a certificate
        return path

    def find_cluster(self, name_or_id: str) -> dict[str, Any]:
        """A cluster by id, or by name within the project (walking the pages)."""
        path: str | None = "/v2/clusters?limit=1000"
        while path:
            page = self.get(path)
            for cluster in page["clusters"]:
                if name_or_id in (cluster["id"], cluster["name"]):
                    return dict(cluster)
            path = page["next"]
        raise ApiError(404, "Not found", f"no cluster named {name_or_id!r}")
