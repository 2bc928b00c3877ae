"""Encryption of secrets at rest (database passwords) with a key the store never holds."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

_ALPHABET = string.ascii_letters + string.digits


def generate_password(length: int = 32) -> str:
    """A password safe to put in a URI without escaping."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def load_or_create_key(path: Path, configured: str | None) -> bytes:
    """The configured key, else one kept in ``path`` (mode 0600), made on first start."""
    if configured:
        return configured.encode()
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:  # wrong HOARD_SECRET_KEY, or tampered row
            raise RuntimeError("a stored secret cannot be decrypted with this key") from exc
