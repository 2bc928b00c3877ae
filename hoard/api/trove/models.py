"""Trove request bodies. Lenient only for what Trove clients always send and Hoard
has no use for (``nics``, ``availability_zone``, ``modules: []``, ``volume.type``);
everything Hoard acts on is checked as /v2 checks it, by /v2's own models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Volume(Lenient):
    size: int | None = None
    type: str | None = None


class DatastoreRef(Lenient):
    type: str | None = None
    version: str | None = None


class RestorePoint(Lenient):
    backupRef: str


class DatabaseRef(Lenient):
    name: str
    character_set: str | None = None
    collate: str | None = None


class UserRef(Lenient):
    name: str
    password: str | None = None
    host: str | None = None
    databases: list[DatabaseRef] = Field(default_factory=list)


class InstanceSpec(Lenient):
    name: str
    flavorRef: str | int
    volume: Volume | None = None
    datastore: DatastoreRef | None = None
    databases: list[DatabaseRef] = Field(default_factory=list, max_length=100)
    users: list[UserRef] = Field(default_factory=list, max_length=100)
    configuration: str | None = None
    restorePoint: RestorePoint | None = None
    replica_of: str | None = None
    replica_count: int | None = Field(None, ge=1, le=4)
    locality: str | None = None
    modules: list[Any] | None = None


class InstanceCreate(Lenient):
    instance: InstanceSpec


class InstancePatch(Lenient):
    """PUT and PATCH /instances/{id}: a rename, or a configuration to (de)tach."""

    name: str | None = None
    configuration: str | None = None
    replica_of: str | None = None
    slave_of: str | None = None


class InstanceUpdate(Lenient):
    instance: dict[str, Any]
