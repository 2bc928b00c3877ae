"""Validation of names a tenant chooses."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
NAME_RULE = "must match [a-z][a-z0-9-]{0,62}: a lowercase letter, then letters, digits or '-'"


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))


# Labels: tenants' own key/value tags on clusters, shaped like Kubernetes labels
# (so they can become labels of a cluster's objects there) but stricter: lowercase.
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?)?$")
MAX_LABELS = 32


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels, or ValueError naming each one that breaks the rules."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, not {len(labels)}")
    bad = [f"key {k!r}" for k in labels if not LABEL_KEY_RE.fullmatch(k)]
    bad += [f"value {v!r} of {k!r}" for k, v in labels.items()
            if not isinstance(v, str) or not LABEL_VALUE_RE.fullmatch(v)]
    if bad:
        raise ValueError(f"bad label {', '.join(bad)}: keys are 1-63 lowercase letters, "
                         "digits and '.', '_', '-', '/' (starting and ending with a letter "
                         "or digit); values the same without '/', or empty")
    return labels
