"""What each provider offers: the versions of each engine it runs and the
abilities it lacks. The catalog shows it; a create or change that asks a
provider for what it does not offer is refused here, before any work starts,
with the provider named (a cluster stays on its provider for life, so what
that provider cannot do, the cluster cannot have)."""

from __future__ import annotations

from typing import Any

from hoard.api.schemas import ClusterCreate
from hoard.domain.abilities import Ability, refusal
from hoard.domain.errors import InvalidInput
from hoard.engines.base import Engine
from hoard.workflows.services import Services


def require(svc: Services, provider: str, *abilities: Ability) -> None:
    """Refuse (422) if ``provider`` lacks any of ``abilities``."""
    for ability in abilities:
        problem = refusal(provider, ability, svc.providers[provider].lacks)
        if problem is not None:
            raise InvalidInput(problem)


def asked_by(body: ClusterCreate) -> list[Ability]:
    """The abilities a create needs of its provider, beyond running one node."""
    asked = []
    if body.nodes > 1:
        asked.append(Ability.REPLICATED_CLUSTERS)
    if body.restore is not None:
        asked.append(Ability.BACKUPS)  # a restore runs the engine's restore on a node
        if body.restore.time is not None:
            asked.append(Ability.POINT_IN_TIME_RESTORE)
    if body.pooler is not None:
        asked.append(Ability.CONNECTION_POOLER)
    if body.storage_autoscale is not None:
        asked.append(Ability.STORAGE_AUTOSCALE)
    return asked


def check_version(svc: Services, engine: Engine, provider: str, version: str) -> None:
    """Refuse (422) a version ``provider`` does not run, saying which it does."""
    offered = svc.versions(engine, provider)
    if version in offered:
        return
    if not offered:
        raise InvalidInput(f"provider {provider!r} offers no version of engine "
                           f"{engine.name!r}")
    raise InvalidInput(f"unknown {engine.name} version {version!r} on provider {provider!r}; "
                       f"available: {', '.join(offered)}")


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders "10.11" after "10.6" and "15" after "7.0" (numbers as numbers)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part)
                 for part in version.split("."))


def by_version(svc: Services, engine: Engine) -> list[dict[str, Any]]:
    """Every version any provider offers, newest first, with the providers
    offering it (in registry order)."""
    offering: dict[str, list[str]] = {}
    for name, provider in svc.providers.items():
        for version in provider.versions(engine):
            offering.setdefault(version, []).append(name)
    return [{"version": v, "providers": offering[v]}
            for v in sorted(offering, key=_version_key, reverse=True)]


def by_provider(svc: Services, engine: Engine, abilities: list[str]) -> list[dict[str, Any]]:
    """Each provider's versions of ``engine`` and which of the engine's
    ``abilities`` it lacks (empty: all of them), storage autoscale included
    (every engine's, the provider's to measure)."""
    relevant = [*abilities, Ability.STORAGE_AUTOSCALE]
    return [{"name": name, "default": name == svc.settings.provider,
             "versions": provider.versions(engine),
             "missing_abilities": [a for a in relevant if a in provider.lacks]}
            for name, provider in svc.providers.items()]


def providers(svc: Services) -> list[dict[str, Any]]:
    """The providers a create may name, the default first marked, each with
    every ability it lacks whatever the engine."""
    return [{"name": name, "default": name == svc.settings.provider,
             "missing_abilities": sorted(provider.lacks, key=list(Ability).index)}
            for name, provider in svc.providers.items()]
