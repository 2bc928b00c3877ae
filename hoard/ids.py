"""Identifiers that sort by creation time, so keyset paging by id is creation order."""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A UUIDv7-shaped id: 48 bits of milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand
    # Stamp version 7 and the RFC 4122 variant.
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
