"""Rules for names a tenant gives to things inside a database: checked before any
work, and still quoted by each engine with its driver's own quoting."""

from __future__ import annotations

import re

from hoard.domain.errors import InvalidInput

# Lowercase only: PostgreSQL folds unquoted names to lowercase and MariaDB's
# case sensitivity follows the filesystem; one rule avoids both surprises.
SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SQL_RULE = "1-63 characters: lowercase letters, digits and '_', not starting with a digit"
ACL_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ACL_RULE = "1-64 characters: letters, digits, '_', '.' or '-'"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_:*?.\[\]{}/-]{1,128}")
KEY_RULE = "1-128 characters: letters, digits and _ : * ? . [ ] { } / -"


def check_sql_name(kind: str, name: str, reserved: frozenset[str]) -> str:
    if not SQL_NAME.fullmatch(name):
        raise InvalidInput(f"{kind} name {name!r} is not valid: {SQL_RULE}")
    if name in reserved or name.startswith("pg_"):
        raise InvalidInput(f"{kind} name {name!r} is reserved")
    return name


def check_acl_user(name: str, reserved: frozenset[str]) -> str:
    if not ACL_USER.fullmatch(name):
        raise InvalidInput(f"user name {name!r} is not valid: {ACL_RULE}")
    if name in reserved:
        raise InvalidInput(f"user name {name!r} is reserved")
    return name


def check_key_pattern(pattern: str) -> str:
    if not KEY_PATTERN.fullmatch(pattern):
        raise InvalidInput(f"key pattern {pattern!r} is not valid: {KEY_RULE}")
    return pattern
