"""Identifiers that sort by creation time, so keyset paging by id is creation order."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_BITS = 74


def new_id() -> str:
    """A UUIDv7: 48 bits of milliseconds, then 74 bits that are random for a new
    millisecond and incremented within one, so ids made by one process are
    strictly increasing (the "monotonic random" method of RFC 9562)."""
    global _last_ms, _last_rand
    with _lock:
        ms = max(time.time_ns() // 1_000_000, _last_ms)
        if ms == _last_ms:
            rand = _last_rand + 1 + int.from_bytes(os.urandom(2), "big")
            if rand >= 1 << _RAND_BITS:  # overflow: borrow the next millisecond
                ms, rand = ms + 1, int.from_bytes(os.urandom(9), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> (80 - _RAND_BITS + 1)
        _last_ms, _last_rand = ms, rand
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b
    return str(uuid.UUID(int=value))


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id (a UUID): markers and ids in a query
    are checked with this before they reach the store."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
