"""A node context's passwords are unsealed when first read, once."""

from __future__ import annotations

from hoard.engines.base import SealedCredentials


def test_a_sealed_password_is_opened_once_on_first_use() -> None:
    opened: list[int] = []

    def unseal() -> str:
        opened.append(1)
        return "s3cret"

    creds = SealedCredentials("hoard", unseal)
    assert creds.user == "hoard" and opened == []
    assert creds.password == "s3cret" and creds.password == "s3cret"
    assert opened == [1]
    assert (creds.user, creds.password) == ("hoard", "s3cret")
