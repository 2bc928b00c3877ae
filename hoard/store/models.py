"""Tables of the state store. Desired state and cached observed state live here."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_clusters: Mapped[int] = mapped_column(Integer)
    quota_nodes: Mapped[int] = mapped_column(Integer)
    quota_storage_gb: Mapped[int] = mapped_column(Integer)
    # The project's backup data key, sealed; made at its first backup.
    backup_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


SHARDS = 64  # fixed: a cluster's shard never changes; workers own whole shards


def shard_of(cluster_id: str) -> int:
    """The shard a cluster's background work (observing, archiving, schedules)
    belongs to; workers split the shards among themselves."""
    return int.from_bytes(hashlib.sha256(cluster_id.encode()).digest()[:4], "big") % SHARDS


def _shard_default(context: Any) -> int:
    return shard_of(context.get_current_parameters()["id"])


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        Index("uq_clusters_project_name", "project_id", "name", unique=True),
        Index("ix_clusters_project_id", "project_id", "id"),  # the keyset list
        Index("ix_clusters_project_status", "project_id", "status", "id"),
        Index("ix_clusters_project_engine", "project_id", "engine", "id"),
        Index("ix_clusters_shard", "shard", "id"),  # a worker's share, in id order
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, default=_shard_default)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    engine: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(16))
    size: Mapped[str] = mapped_column(String(32))
    node_count: Mapped[int] = mapped_column(Integer)
    storage_gb: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    configuration_id: Mapped[str | None] = mapped_column(
        ForeignKey("configurations.id"), nullable=True
    )
    # Settings changed on disk that the running servers take only at a restart.
    pending_restart: Mapped[list[str]] = mapped_column(JSON, default=list)
    # While settings are pending: the configuration values the servers last started
    # with, so a restart whose new settings keep a server from starting puts these
    # back. None when the servers run with the attached configuration's values.
    running_parameters: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)
    # {"cron": "0 3 * * *", "keep_last": 7, "keep_days": 30}, or SQL NULL (never JSON
    # null: "IS NOT NULL" must mean "has a schedule").
    backup_schedule: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)
    # The one operation running on the cluster, claimed by compare-and-set
    # (hoard.store.locks); NULL when it is free for the next.
    operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # "sync": a commit waits for a replica (replicated clusters only).
    durability: Mapped[str] = mapped_column(String(16), default="async",
                                            server_default="async")
    # A replicated cluster's stable endpoints (None for a single node, reached directly).
    endpoint_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The provider that runs the cluster's nodes, for the cluster's whole life.
    provider: Mapped[str] = mapped_column(String(32), default="local",
                                          server_default="local")
    # The read-only endpoint's own address (None: it shares ``endpoint_host``, as in
    # clusters made before endpoints had addresses of their own).
    ro_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    rw_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ro_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The tenant's own key/value tags (lists filter by them).
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    # While on, a delete is refused.
    deletion_protection: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())
    # {"day": "daily"|"mon".."sun", "start": "HH:MM", "duration_minutes": N} (UTC):
    # when Hoard may restart the cluster to apply pending settings; SQL NULL: never.
    maintenance_window: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)
    # {"mode": "transaction"|"session", "max_client_conn": N}: the connection pooler
    # asked for (PostgreSQL), or SQL NULL for none.
    pooler: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True),
                                                          nullable=True)
    # The pooler's own address (on port 6432), once it runs there.
    pooler_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # {"max_gb": N, "threshold_percent": 80}: storage grows by itself up to max_gb
    # (hoard.domain.autoscale); SQL NULL: off.
    storage_autoscale: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)
    # The storage_gb at which autoscaling last said it cannot grow further (said
    # once per size); NULL when it has not.
    autoscale_limit_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When a restore of the cluster's backup was last proved by the engine's own checks.
    last_verified_restorable_at: Mapped[dt.datetime | None] = mapped_column(DateTime,
                                                                           nullable=True)
    # ...and how long that restore and its checks took.
    last_verified_restorable_seconds: Mapped[float | None] = mapped_column(Float,
                                                                          nullable=True)
    admin_user: Mapped[str] = mapped_column(String(63))
    admin_password: Mapped[str] = mapped_column(Text)  # sealed with the secret key
    service_password: Mapped[str] = mapped_column(Text)  # Hoard's own superuser, sealed
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    configuration: Mapped[Configuration | None] = relationship(lazy="joined")
    # The operation holding the claim, read only when a view names it (no query
    # while the cluster is free).
    running_operation: Mapped[Operation | None] = relationship(
        primaryjoin="foreign(Cluster.operation_id) == Operation.id", viewonly=True,
        lazy="select")
    nodes: Mapped[list[Node]] = relationship(
        back_populates="cluster", cascade="all, delete-orphan", order_by="Node.ordinal",
        lazy="selectin",
    )


class Configuration(Base):
    """A named set of engine parameters, validated against the engine's schema."""

    __tablename__ = "configurations"
    __table_args__ = (Index("uq_configurations_project_name", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(255), default="")
    engine: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(16))
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Event(Base):
    """One line of a cluster's history: what happened, and why it failed if it did."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_cluster", "cluster_id", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # e.g. operation.failed, node.restarted
    message: Mapped[str] = mapped_column(Text)
    operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Backup(Base):
    """A full backup in the backup store. Outlives its cluster until retention
    removes it, so it keeps what a restore needs: engine, version, accounts."""

    __tablename__ = "backups"
    __table_args__ = (
        Index("ix_backups_project", "project_id", "id"),
        Index("ix_backups_cluster", "cluster_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    cluster_id: Mapped[str] = mapped_column(String(36))  # no FK: the cluster may be gone
    cluster_name: Mapped[str] = mapped_column(String(63))
    engine: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(16))
    storage_gb: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # full, incremental
    # An incremental backup's base (full or incremental); restores walk back to a full.
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    reason: Mapped[str] = mapped_column(String(16))  # manual, scheduled, final
    status: Mapped[str] = mapped_column(String(16))  # creating, available, failed
    error: Mapped[str] = mapped_column(Text, default="")
    object_key: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    admin_user: Mapped[str] = mapped_column(String(63))
    admin_password: Mapped[str] = mapped_column(Text)  # sealed, as in the cluster
    service_password: Mapped[str] = mapped_column(Text)
    keep_last: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keep_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # The last verification (a restore into a throwaway node and the engine's own
    # checks): {"status": "passed"|"failed", "seconds", "counts", "checks", "reason",
    # "at", "operation_id"}; SQL NULL until one ends. ``verified_at``: the last pass.
    verification: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # The verification running on it, claimed by compare-and-set (one at a time).
    verifying_operation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ArchivedLog(Base):
    """One shipped change-log file (WAL segment, binlog) of a cluster."""

    __tablename__ = "archived_logs"
    __table_args__ = (Index("uq_archived_logs_name", "cluster_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(255))
    object_key: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    archived_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The latest commit the file records (None: none); a restore to T stages the
    # logs up to the first one that goes past T.
    last_commit_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # Every commit up to this time is in this file or an earlier one (a rotation's
    # mark): the restorable window ends at the newest.
    complete_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        Index("uq_nodes_host_port", "host", "port", unique=True),
        Index("ix_nodes_cluster", "cluster_id"),  # loading a page's nodes
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Extra ports the engine's HA machinery listens on, by name (e.g. "patroni").
    ports: Mapped[dict[str, int]] = mapped_column(JSON, default=dict, server_default="{}")
    lag_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    observed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # The node's storage as the observer last saw it (None until it has looked).
    storage_used_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    storage_total_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The storage alarm threshold standing (percent; 0 none), which clears only
    # some way under it (domain/storage.py). None: not recorded yet (a release
    # before it, or never observed): the recorded use's own threshold.
    storage_alarm: Mapped[int | None] = mapped_column(Integer, nullable=True)

    cluster: Mapped[Cluster] = relationship(back_populates="nodes")


class Operation(Base):
    """A long-running change. Outlives its cluster so a delete can be followed to the end."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_project", "project_id", "id"),
                      Index("ix_operations_status", "status", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    cluster_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The workflow's input besides ids (secrets in it are sealed).
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    # HTTP status that describes a failure: 409 conflict, 422 invalid, 500 otherwise.
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Worker(Base):
    """A worker process's lease. ``epoch`` grows with every start and every
    takeover; a worker writes only while its row still has its epoch and is
    ``alive`` (fencing), so one that lost its lease cannot act on what it lost."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # alive | stopped | claimed | taken
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    taken_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ShardOwner(Base):
    """Which worker does a shard's background work now (None: nobody, for a moment
    while it moves). A shard changes hands only when its owner has let it go or
    lost its lease, so no cluster is observed by two workers at once."""

    __tablename__ = "shard_owners"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # the owner's epoch


class Address(Base):
    """An address a cluster holds for its life (its primary key is what makes two
    clusters never share one): a standalone cluster's, or an endpoint's."""

    __tablename__ = "addresses"

    address: Mapped[str] = mapped_column(String(45), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"),
                                            index=True)
    # "node", "read-write", "read-only" or "pooler"
    role: Mapped[str] = mapped_column(String(16))


class MetricSample(Base):
    """One node's metrics at one moment (hoard.domain.metrics): raw samples at the
    observer's metrics interval (``resolution`` 0), and, past the raw retention,
    one per ``resolution`` seconds. Pruned by the observer loop, so the table
    holds at most a bounded window per node."""

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_age", "resolution", "at"),)

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"),
                                         primary_key=True)
    resolution: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    values: Mapped[dict[str, float]] = mapped_column(JSON)
