"""Validation of names a tenant chooses."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
NAME_RULE = "must match [a-z][a-z0-9-]{0,62}: a lowercase letter, then letters, digits or '-'"


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))
