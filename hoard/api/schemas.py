"""Request and response bodies. Requests are strict: wrong types and unknown
fields are rejected, never coerced or ignored."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hoard.domain import autoscale, maintenance, pooler
from hoard.domain.catalog import MAX_NODES, MAX_STORAGE_GB, MIN_STORAGE_GB, SIZES
from hoard.domain.names import MAX_LABELS, NAME_RE, NAME_RULE, check_labels, valid_name
from hoard.engines.registry import ENGINES

# Documented in the OpenAPI schema but checked by the validators below, whose
# messages say what to fix (pydantic's would only repeat the pattern).
NAME_SCHEMA: dict[str, Any] = {"pattern": NAME_RE.pattern}
ID_SCHEMA: dict[str, Any] = {"format": "uuid"}
SIZE_SCHEMA: dict[str, Any] = {"enum": list(SIZES)}
ENGINE_SCHEMA: dict[str, Any] = {"enum": sorted(ENGINES)}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_name(value: str) -> str:
    if not valid_name(value):
        raise ValueError(f"name {value!r} {NAME_RULE}")
    return value


class MaintenanceWindow(Strict):
    """When Hoard may restart the cluster to apply settings that wait for a restart
    (``pending_restart``); outside it they wait, unless applied at once with
    ``POST /v2/clusters/{id}/actions/apply-pending``."""

    day: str = Field(description="'daily', or one day of the week: mon, tue, wed, thu, "
                                 "fri, sat, sun",
                     json_schema_extra={"enum": [maintenance.EVERY_DAY, *maintenance.DAYS]})
    start: str = Field(description="When the window opens, HH:MM in UTC",
                       json_schema_extra={"pattern": maintenance.START_RE.pattern})
    duration_minutes: int = Field(ge=maintenance.MIN_MINUTES, le=maintenance.MAX_MINUTES,
                                  description="How long it stays open (it may run past "
                                              "midnight)")

    _day = field_validator("day")(maintenance.check_day)
    _start = field_validator("start")(maintenance.check_start)


class Pooler(Strict):
    """A connection pooler (PgBouncer) in front of a PostgreSQL cluster, at an
    address of its own on port 6432: TLS with Hoard's CA, the cluster's users and
    passwords, always reaching the current primary."""

    mode: Literal["transaction", "session"] = Field(
        description="transaction: a server connection is lent for one transaction "
                    "(many clients share few connections; no session state such as "
                    "SET, LISTEN or session advisory locks); session: for the client's "
                    "whole connection")
    max_client_conn: int = Field(ge=pooler.MIN_CLIENT_CONN, le=pooler.MAX_CLIENT_CONN,
                                 description="Most client connections the pooler accepts "
                                             "at once")


class StorageAutoscale(Strict):
    """Grow the storage by itself before it fills: when a node's storage passes
    ``threshold_percent`` used, by half again its size (rounded up, at least
    1 GB), never past ``max_gb``; each growth is an operation of its own, with
    the servers up where the provider grows storage live."""

    max_gb: int = Field(ge=MIN_STORAGE_GB, le=MAX_STORAGE_GB,
                        description="The largest size it grows to (at least storage_gb; "
                                    "the project's storage quota must hold every node at it)")
    threshold_percent: int = Field(
        autoscale.DEFAULT_THRESHOLD, ge=autoscale.MIN_THRESHOLD, le=autoscale.MAX_THRESHOLD,
        description="Storage used, in percent of a node's, past which it grows")


class ClusterCreate(Strict):
    name: str = Field(description="Unique in the project; " + NAME_RULE,
                      json_schema_extra=NAME_SCHEMA)
    engine: str = Field(description="An engine from GET /v2/engines",
                        json_schema_extra=ENGINE_SCHEMA)
    version: str | None = Field(None, description="Engine version; the newest when omitted")
    size: str = Field(description="A size from GET /v2/sizes", json_schema_extra=SIZE_SCHEMA)
    nodes: int = Field(1, ge=1, le=MAX_NODES,
                       description="1: a standalone instance; 2-5: a replicated cluster with "
                                   "automatic failover and stable endpoints")
    durability: Literal["async", "sync"] | None = Field(
        None, description="Replicated clusters: 'sync' acknowledges a commit only once a "
                          "replica has it; default: the engine's (GET /v2/engines)")
    storage_gb: int = Field(10, ge=MIN_STORAGE_GB, le=MAX_STORAGE_GB)
    restore: RestoreSpec | None = Field(None, description="Make the cluster from a backup")
    configuration_id: str | None = Field(
        None, description="A configuration (GET /v2/configurations) of the cluster's engine "
                          "and version to start with: no restart later",
        json_schema_extra=ID_SCHEMA)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS,
                                   description="Your own key/value tags; lists filter by "
                                               "them (?label=key=value)")
    deletion_protection: bool = Field(False, description="While on, a delete is refused")
    maintenance_window: MaintenanceWindow | None = Field(
        None, description="When Hoard may restart the cluster to apply pending settings; "
                          "none: they wait for an explicit restart")
    pooler: Pooler | None = Field(
        None, description="PostgreSQL: a connection pooler in front of the cluster "
                          "(shown in endpoints with role 'pooler')")
    storage_autoscale: StorageAutoscale | None = Field(
        None, description="Grow the storage by itself before it fills; none: off")
    provider: str | None = Field(
        None, max_length=32, pattern=r"^[a-z][a-z0-9-]*$",
        description="Where the cluster runs, for its whole life; default: the operator's "
                    "(HOARD_PROVIDER)")

    _name = field_validator("name")(_check_name)
    _labels = field_validator("labels")(check_labels)


class Quotas(Strict):
    clusters: int = Field(ge=0, le=100_000)
    nodes: int = Field(ge=0, le=500_000)
    storage_gb: int = Field(ge=0, le=100_000_000)


class ProjectCreate(Strict):
    name: str = Field(description=NAME_RULE, json_schema_extra=NAME_SCHEMA)
    quotas: Quotas | None = None

    _name = field_validator("name")(_check_name)


class TokenCreate(Strict):
    description: str = Field("", max_length=255)


class Endpoint(BaseModel):
    role: str = Field(description="read-write: always the current primary; "
                                  "read-only: spread over the replicas; pooler: the "
                                  "connection pooler (PgBouncer), to the primary")
    host: str
    port: int


class StorageView(BaseModel):
    used_bytes: int
    total_bytes: int


class NodeView(BaseModel):
    id: str
    ordinal: int
    role: str = Field(description="primary or replica, as the engine's HA machinery says")
    status: str
    status_reason: str
    provider: str
    host: str | None
    port: int | None
    zone: str | None = Field(description="The failure domain the node was placed in")
    lag_bytes: int | None = Field(description="Replication lag behind the primary")
    limits: dict[str, str]
    storage: StorageView | None = Field(
        description="Storage used and its size, as the observer last saw them")
    observed_at: dt.datetime | None


class RunningOperation(BaseModel):
    """The operation holding a cluster: follow it at GET /v2/operations/{id}."""

    id: str
    kind: str = Field(description="create, resize, scale, update, restart, backup, ...")


class ClusterView(BaseModel):
    id: str
    name: str
    engine: str
    version: str
    size: str
    provider: str
    nodes: int
    durability: str
    storage_gb: int
    status: str
    status_reason: str
    configuration_id: str | None
    pending_restart: list[str] = Field(
        description="Settings written but waiting for a restart: the maintenance window's, "
                    "or POST /actions/apply-pending (or /actions/restart)")
    labels: dict[str, str]
    deletion_protection: bool
    maintenance_window: MaintenanceWindow | None
    pooler: Pooler | None = Field(None, description="The connection pooler asked for; "
                                                    "its address is the 'pooler' endpoint")
    storage_autoscale: StorageAutoscale | None = Field(
        description="How the storage grows by itself; null: it does not")
    last_verified_restorable_at: dt.datetime | None = Field(
        description="When a backup of this cluster last passed its verification (restored "
                    "into a throwaway node and checked by the engine's own tools); null: never")
    last_verified_restorable_seconds: float | None = Field(
        description="How long that restore and its checks took, in seconds")
    operation: RunningOperation | None = Field(
        description="The operation running on the cluster now; null: none")
    endpoints: list[Endpoint]
    members: list[NodeView]
    created_at: dt.datetime
    updated_at: dt.datetime


class MetricSeries(BaseModel):
    metric: str = Field(description="connections, operations_per_second, cache_hit_ratio, "
                                    "lock_waits, replication_lag_bytes, storage_used_bytes, "
                                    "storage_total_bytes, cpu_usage_ratio, memory_used_bytes "
                                    "or memory_limit_bytes")
    unit: str
    node_id: str
    ordinal: int = Field(description="The node's number in its cluster")
    points: list[tuple[float, float]] = Field(
        description="[start of the step in seconds since the epoch (a whole multiple of "
                    "the step), value], oldest first; steps without a sample are left out")


class ClusterMetrics(BaseModel):
    cluster_id: str
    since: dt.datetime
    until: dt.datetime
    step: int = Field(description="Seconds each point stands for")
    interval: float = Field(description="Seconds between samples (0: collection is off)")
    series: list[MetricSeries]


class OperationView(BaseModel):
    id: str
    kind: str
    cluster_id: str | None
    status: str
    progress: int
    steps: list[dict[str, Any]]
    error: str
    error_status: int | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class Accepted(BaseModel):
    cluster: ClusterView
    operation: OperationView


class FieldChange(BaseModel):
    """One field of a change, as a dry run plans it."""

    field: str
    current: Any
    requested: Any
    applies: Literal["at_once", "live", "restart", "pending_restart", "at_start",
                     "operation"] = Field(
        description="at_once: the cluster's record only; live: the running servers take it "
                    "without a restart; restart: the change restarts (or stops) the servers "
                    "itself; pending_restart: written, and waits for a restart; at_start: "
                    "the cluster is stopped and takes it when started; operation: nodes "
                    "join or leave, or the pooler opens, changes or closes")
    detail: str


class Downtime(BaseModel):
    kind: Literal["none", "restart", "rolling"] = Field(
        description="none; restart: each node of a standalone cluster is restarted (it is "
                    "unavailable meanwhile); rolling: a replicated cluster's nodes one at a "
                    "time")
    failover: bool = Field(description="The primary is stopped: writes pause while the "
                                       "engine's HA machinery fails over")
    detail: str


class ChangePlan(BaseModel):
    """What a PATCH would do (``?dry_run=true``): nothing is changed to say it."""

    operation: str | None = Field(description="The kind of operation the change would "
                                              "start (update, scale, pooler); null: made at once")
    changes: list[FieldChange]
    live: list[str] = Field(description="Settings the running servers would take live")
    restart: list[str] = Field(description="Settings the change's own restart would apply")
    pending_restart: list[str] = Field(
        description="Settings that would wait for a restart afterwards")
    pending_applies: str = Field(description="When those would apply: the maintenance "
                                             "window's next opening, or an explicit action")
    downtime: Downtime


class Changed(BaseModel):
    """A PATCH's answer: 202 with the operation making the change, or 200 with none
    for one made at once (labels, deletion protection, maintenance window); with
    ``?dry_run=true``, 200 with the plan and the cluster as it is."""

    cluster: ClusterView
    operation: OperationView | None
    plan: ChangePlan | None = None


class ClusterPage(BaseModel):
    clusters: list[ClusterView]
    next: str | None = Field(description="URL of the next page, or null on the last page")


CA_FILE_PLACEHOLDER = "{ca_file}"


class ConnectCommand(BaseModel):
    argv: list[str]
    env: dict[str, str] = Field(description="Set these in the client's environment")
    ca_file_placeholder: str = Field(
        CA_FILE_PLACEHOLDER, description="An argv item or env value equal to this stands "
        "for the path of Hoard's CA certificate (from ca_cert_url) on the client's machine")


class CredentialsView(BaseModel):
    username: str
    password: str
    host: str
    port: int
    uri: str = Field(description="Requires TLS with the server's certificate and name "
                     "verified; the client supplies Hoard's CA (ca_cert_url), e.g. psql "
                     "with PGSSLROOTCERT, PyMySQL with ssl_ca, redis-py with ssl_ca_certs")
    ca_cert_url: str = Field(description="Hoard's CA certificate, which signs every "
                             "database endpoint's (public)")
    connect_command: ConnectCommand


class ProjectView(BaseModel):
    id: str
    name: str
    quotas: Quotas
    usage: Quotas
    created_at: dt.datetime


class TokenView(BaseModel):
    id: str
    project_id: str
    description: str
    token: str = Field(description="Shown only here, once; stored hashed")


class TokenInfo(BaseModel):
    id: str
    description: str
    created_at: dt.datetime


class WhoAmI(BaseModel):
    """Whose the calling token is: what a client shows as "signed in as"."""

    project_id: str
    project_name: str
    is_admin: bool = Field(description="An admin token: it may call the admin-only routes")
    token: TokenInfo = Field(description="The token itself (never its secret). Tokens do not "
                                         "expire: one works until it is removed")


class ClusterPatch(Strict):
    """Fields to change; only those present change. ``configuration_id: null`` detaches."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"minProperties": 1})

    size: Annotated[str, Field(json_schema_extra=SIZE_SCHEMA)] | None = None
    storage_gb: int | None = Field(None, ge=MIN_STORAGE_GB, le=MAX_STORAGE_GB)
    configuration_id: str | None = None
    nodes: int | None = Field(None, ge=1, le=MAX_NODES,
                              description="Grow or shrink a replicated cluster (on its own)")
    durability: Literal["async", "sync"] | None = Field(
        None, description="Replicated clusters: change what a commit waits for")
    labels: dict[str, str] | None = Field(
        None, max_length=MAX_LABELS,
        description="Replace the cluster's labels (applied at once, no operation)")
    deletion_protection: bool | None = Field(
        None, description="Turn deletion protection on or off (applied at once)")
    maintenance_window: MaintenanceWindow | None = Field(
        None, description="Set the maintenance window, or remove it with null (applied "
                          "at once)")
    pooler: Pooler | None = Field(
        None, description="PostgreSQL: open or change the connection pooler, or close it "
                          "with null (on its own; an operation)")
    storage_autoscale: StorageAutoscale | None = Field(
        None, description="Turn storage autoscaling on or change it, or off with null "
                          "(applied at once)")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_labels(value)


class Switchover(Strict):
    node_id: str = Field(description="The replica to make the primary")


class PromoteNode(Strict):
    name: str = Field(description="Name of the new standalone cluster; " + NAME_RULE,
                      json_schema_extra=NAME_SCHEMA)

    _name = field_validator("name")(_check_name)


class OwnerUser(Strict):
    name: str


class DatabaseCreate(Strict):
    name: str
    charset: str | None = Field(None, max_length=32, description="Encoding / character set")
    collation: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    user: OwnerUser | None = Field(None, description="Also create this user with full access")


class DatabaseView(BaseModel):
    name: str
    charset: str
    collation: str


class UserCreate(Strict):
    name: str
    databases: list[str] = Field(default_factory=list, max_length=100,
                                 description="SQL engines: databases to grant full access to")
    keys: list[str] = Field(default_factory=list, max_length=50,
                            description="Redis: key patterns the user may touch")
    categories: list[str] = Field(default_factory=list, max_length=30,
                                  description="Redis: command categories, e.g. read, write")


class UserView(BaseModel):
    name: str
    databases: list[str] = []
    keys: list[str] = []
    categories: list[str] = []
    password: str | None = Field(default=None, description="Only in the answer that set it")


class ConfigurationCreate(Strict):
    name: str = Field(description=NAME_RULE, json_schema_extra=NAME_SCHEMA)
    engine: str = Field(json_schema_extra=ENGINE_SCHEMA)
    version: str | None = None
    description: str = Field("", max_length=255)
    values: dict[str, int | bool | str] = Field(default_factory=dict, max_length=200)

    _name = field_validator("name")(_check_name)


class ConfigurationUpdate(Strict):
    values: dict[str, int | bool | str] = Field(max_length=200)
    description: str | None = Field(None, max_length=255)


class ConfigurationView(BaseModel):
    id: str
    name: str
    engine: str
    version: str
    description: str
    values: dict[str, Any]
    clusters: list[str] = Field(description="Ids of the clusters it is attached to")
    created_at: dt.datetime
    updated_at: dt.datetime
    operations: list[OperationView] = Field(
        default_factory=list, description="An edit of an attached configuration: the "
        "update applying it to each attached cluster")


class EventView(BaseModel):
    id: str
    kind: str
    message: str
    operation_id: str | None
    created_at: dt.datetime


class EventPage(BaseModel):
    events: list[EventView]
    next: str | None


class LogLineView(BaseModel):
    """One entry of a node's log (a statement that spans lines is one entry),
    secrets scrubbed (``***``). When following, each is one line of NDJSON, and
    the stream's last line may instead be ``{"end": "<why it ended>"}``."""

    time: dt.datetime | None = Field(description="When the server wrote it (UTC); null "
                                                 "for a line without a time of its own")
    node: str = Field(description="The node whose log it is", json_schema_extra=ID_SCHEMA)
    line: str


class LogPage(BaseModel):
    kind: Literal["server", "slow"]
    lines: list[LogLineView] = Field(description="Oldest first: the newest `limit` entries")
    truncated: bool = Field(description="Older entries (after `since`, if given) were left "
                                        "out: ask again with a later `since`")
    limit: int


class RestoreSpec(Strict):
    """Restore from a backup, or from a cluster's backups and logs at a time."""

    backup_id: str | None = None
    cluster_id: str | None = None
    # Not strict: JSON carries times as ISO-8601 strings.
    time: dt.datetime | None = Field(None, strict=False, description="ISO-8601 with a time "
                                     "zone; with cluster_id: restore to this second")

    @field_validator("time")
    @classmethod
    def _representable_in_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        """Times are compared in UTC: one that falls outside years 1-9999 there
        (9999-12-31T23:59:59-01:00) is refused here, not met as an overflow later."""
        if value is not None and value.tzinfo is not None:
            try:
                value.astimezone(dt.UTC)
            except OverflowError:
                raise ValueError(f"{value.isoformat()} is outside years 1-9999 once in "
                                 "UTC") from None
        return value


class VerificationView(BaseModel):
    """The backup's last verification: restored into a throwaway node, checked with
    the engine's own tools, every table's rows counted, the node destroyed."""

    status: Literal["passed", "failed"]
    seconds: float = Field(description="From the start of the restore to the end of the "
                                       "checks")
    counts: dict[str, int] = Field(description="Rows of every table (PostgreSQL: "
                                               "database.schema.table, MariaDB: "
                                               "database.table); Redis: keys per database")
    checks: list[str] = Field(description="What was checked, in plain words")
    reason: str = Field(description="Why it failed; empty when it passed")
    at: dt.datetime
    operation_id: str


class BackupView(BaseModel):
    id: str
    cluster_id: str
    cluster_name: str
    engine: str
    version: str
    kind: str
    parent_id: str | None
    reason: str
    status: str
    error: str
    size_bytes: int
    sha256: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    verified_at: dt.datetime | None = Field(
        description="When this backup last passed its verification; null: never")
    verification: VerificationView | None = Field(
        description="The last verification's outcome, passed or failed; null: none yet")
    verifying: bool = Field(description="A verification of this backup is running")


class BackupRequest(Strict):
    kind: Literal["full", "incremental"] = Field(
        "full", description="incremental: only what changed since the cluster's newest "
        "backup (engines that support it: see abilities in GET /v2/engines)")


class BackupAccepted(BaseModel):
    backup: BackupView
    operation: OperationView


class BackupSchedule(Strict):
    cron: str = Field(max_length=100, description="When to back up, e.g. '0 3 * * *' (UTC)")
    keep_last: int = Field(7, ge=1, le=1000, description="Backups to keep, newest first")
    keep_days: int | None = Field(None, ge=1, le=3650, description="Drop backups older than")
    verify: str | None = Field(
        None, max_length=100,
        description="Prove the newest backup restorable on a schedule: 'daily' (05:00 UTC), "
                    "'weekly' (Sundays 05:00 UTC) or a 5-field cron expression (UTC). Each "
                    "time, it is restored into a throwaway node and checked with the engine's "
                    "own tools; null: never")


class Window(BaseModel):
    earliest: dt.datetime
    latest: dt.datetime


class BackupPage(BaseModel):
    backups: list[BackupView]
    next: str | None
    restorable: Window | None = Field(
        None, description="With cluster_id: the times that cluster can be restored to")


ClusterCreate.model_rebuild()
