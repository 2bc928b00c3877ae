"""Which list requests the lean path answers: only plainly valid ones; anything
the FastAPI route must judge (errors, unknown or repeated parameters) is left
to it, so the two paths cannot disagree (tests/test_api_validation.py runs both
against a live server)."""

from __future__ import annotations

import pytest

from hoard.api.lean import plain_query

MARKER = "0190f1c2-7c4e-7a6b-9d2e-3f4a5b6c7d8e"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", {"limit": "50"}),
    (b"limit=20", {"limit": "20"}),
    (b"limit=0020", {"limit": "20"}),
    (b"limit=1000&status=ACTIVE", {"limit": "1000", "status": "ACTIVE"}),
    (f"marker={MARKER}&engine=redis".encode(), {"limit": "50", "marker": MARKER,
                                                "engine": "redis"}),
    (b"engine=", {"limit": "50", "engine": ""}),
])
def test_plainly_valid_queries_are_answered(raw: bytes, expected: dict[str, str]) -> None:
    assert plain_query(raw) == expected


@pytest.mark.parametrize("raw", [
    b"limit=0", b"limit=1001", b"limit=-1", b"limit=+5", b"limit=1e3", b"limit=",
    b"limit=%D9%A3",  # an Arabic-Indic digit: str.isdigit() says yes, the route says no
    b"marker=not-a-uuid", b"marker=", b"marker=' OR 1=1 --",
    b"status=active", b"status=", b"engine=" + b"e" * 33,
    b"limit=1&limit=2", b"via=x", b"limit=1&Limit=2", b"\xff=1",
])
def test_anything_else_goes_to_the_route(raw: bytes) -> None:
    assert plain_query(raw) is None
