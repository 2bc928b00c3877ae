"""TLS to Redis nodes with a context built once per CA, not once per connection.

redis-py builds every connection's context with ``ssl.create_default_context()``,
which loads the system's whole trust store (40 ms of CPU here) before adding the
CA. Health checks open a connection each, every 10 to 50 ms while a node starts,
and a create asks a node several things: a restored node's start kept a CPU busy
with them, and 50 creates at once spent a tenth of the worker's CPU there. The
context is built once per CA file (or PEM text) instead, trusting it alone.
"""

from __future__ import annotations

import os
import socket
import ssl
from functools import lru_cache

import redis


class TLSConnection(redis.SSLConnection):
    """TLS to a node, trusting only the CA given (a file, or PEM text)."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.ca_certs is not None:
            context = _trusting_file(self.ca_certs, os.stat(self.ca_certs).st_mtime_ns)
        else:
            assert self.ca_data is not None, "a node is reached with Hoard's CA only"
            context = _trusting_pem(str(self.ca_data))
        return context.wrap_socket(sock, server_hostname=self.host)


@lru_cache(maxsize=8)
def _trusting_file(ca_file: str, version: int) -> ssl.SSLContext:
    """Verifies the peer's certificate and name against ``ca_file`` alone (``version``:
    the file's mtime, so a replaced file is read again)."""
    return ssl.create_default_context(cafile=ca_file)


@lru_cache(maxsize=8)
def _trusting_pem(pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pem)
