"""API tokens: random, shown once, stored only as a SHA-256 hash.

Tokens carry 256 bits of randomness, so a fast hash is enough: there is
nothing to brute-force, unlike a human password.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "hoard_"


def generate_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
