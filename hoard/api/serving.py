"""uvicorn's HTTP protocol with TCP_NODELAY on every connection.

Why: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says TCP. The
listening socket uvicorn makes for ``--processes N`` says 0, so its connections
kept Nagle's algorithm on; a response written as headers then body then waited
for the client's delayed ACK, about 40 ms per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    """httptools (C parsing), with Nagle's algorithm off."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


HTTP = "hoard.api.serving:HttpProtocol"  # as uvicorn's ``http`` option, by name
