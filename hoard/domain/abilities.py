"""What a cluster may ask for, by name. Engines have abilities (a Replication
engine runs replicated clusters); a provider may not give one yet (the
Kubernetes provider runs no HA machinery). The catalog shows both, and a
create or change asking for what its engine or provider lacks is refused
before any work starts, naming which one and what it lacks."""

from __future__ import annotations

from enum import StrEnum


class Ability(StrEnum):
    """Names that never change meaning: clients (the console, the CLI) match them."""

    DATABASES = "databases"
    USERS = "users"
    BACKUPS = "backups"
    INCREMENTAL_BACKUPS = "incremental backups"
    POINT_IN_TIME_RESTORE = "point-in-time restore"
    REPLICATED_CLUSTERS = "replicated clusters"
    CONNECTION_POOLER = "connection pooler"
    STORAGE_AUTOSCALE = "storage autoscale"


def refusal(provider: str, ability: Ability, lacks: frozenset[Ability]) -> str | None:
    """Why ``provider`` cannot give ``ability`` (None when it can), in words a
    tenant can act on: the provider's name, the ability, and what to do instead."""
    if ability not in lacks:
        return None
    return (f"the {provider} provider offers no {ability} yet; choose another provider "
            f"(GET /v2/engines lists each one's missing abilities)")
