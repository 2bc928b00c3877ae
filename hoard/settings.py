"""One settings object for the whole service, read from ``HOARD_*`` variables.

Defaults are chosen so that a laptop (or a fresh Debian box) works with no
configuration at all: SQLite state under the state directory, local processes.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def _default_state_dir() -> Path:
    # Database servers run as a dedicated OS user, which must be able to reach
    # its node directories: /root is not traversable by others, /var/lib is.
    if os.geteuid() == 0:
        return Path("/var/lib/hoard")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "hoard"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOARD_", env_file=None)

    state_dir: Path = Field(default_factory=_default_state_dir)
    database_url: str | None = None
    admin_token: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # The shared OS account of platform services (etcd). Each database node and
    # each endpoint proxy runs as an account of its own, with a uid (= gid) from
    # db_uid_range, made when it is placed and removed with it.
    db_os_user: str = "hoard-db"
    db_uid_range: str = "200000-265535"
    # Local node storage: "loop" (a filesystem per node, sized to storage_gb; "ext4"
    # or "xfs" to choose its filesystem), "directory" (size observed only), or
    # "auto" (loop where the host allows).
    local_volumes: str = "auto"
    # Hosts the local provider spreads a cluster's nodes over, as address@zone
    # (every 127.0.0.0/8 address is this machine's loopback).
    # The provider new clusters run on unless the create names another.
    provider: str = "local"
    local_hosts: str = "127.0.0.1@local"
    # Where clusters' own addresses come from: each standalone cluster, and each
    # endpoint (read-write, read-only) of a replicated one, gets one address of
    # this network, on which the engine's standard port (5432, 3306, 6379) answers.
    local_addresses: str = "127.64.0.0/10"
    # The netns provider (off unless set): each node a host of its own, in a network
    # namespace on this private network (hoard/providers/netns.py).
    netns_network: str | None = None
    # How long a local node may take to start and answer before its create fails
    # (a start held up by a temporary cause, such as its address held, is retried
    # until then).
    local_start_deadline: float = Field(120.0, gt=0)
    # The kubernetes provider (off unless set): a kubeconfig file, or "in-cluster" for
    # the service account of the pod Hoard runs in (hoard/providers/kubernetes/).
    kubeconfig: str | None = None
    kubernetes_namespace: str = "hoard-databases"  # every node's objects, labelled by cluster
    kubernetes_control_namespace: str = "hoard-system"  # where Hoard's own workers run
    kubernetes_storage_class: str | None = None  # the volumes' (None: the cluster's default)
    kubernetes_registry: str = ""  # where images/<engine> builds are pulled from (a prefix)
    # The images built from images/<engine>/: the versions the provider offers.
    kubernetes_versions: str = "postgresql=15,mariadb=10.11,redis=7.0"
    # How long a node's pod may take to run (an image pulled, a volume attached)
    # before its create fails.
    kubernetes_start_deadline: float = Field(600.0, gt=0)
    worker_id: str = "local"
    # A worker's lease: renewed every third of it; once it runs out, another worker
    # takes over the worker's unfinished workflows.
    lease_seconds: float = Field(10.0, gt=0.5)
    # Workflows a worker lets do their first work at once (hoard/workflows/gate.py;
    # 0: no limit). A burst beyond it waits its turn, idle; one that runs long
    # stops counting after two seconds.
    workflow_slots: int = Field(4, ge=0)
    # How long a stopping worker lets running workflows finish before handing them over.
    drain_seconds: float = Field(30.0, ge=0)
    outbox_interval: float = 2.0  # how often workers look for operations never started
    observe_interval: float = 2.0
    observe_batch: int = Field(200, ge=1)  # clusters the observer loads and checks at a time
    # Seconds between metric samples of each node, taken by the observer's pass
    # (0: none); raw samples are kept metrics_raw_hours, then one per 5 minutes
    # until metrics_keep_days.
    metrics_interval: float = Field(10.0, ge=0)
    metrics_raw_hours: float = Field(24.0, gt=0)
    metrics_keep_days: float = Field(7.0, gt=0)
    default_quota_clusters: int = 10
    default_quota_nodes: int = 20
    default_quota_storage_gb: int = 200
    log_level: str = "INFO"
    # Largest request body the API reads (bytes); larger ones are refused with 413
    # before they are parsed, and the rest of such a body is never read.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Where backups go: file:///abs/dir (default: <state>/backups) or
    # s3://bucket/prefix?endpoint=https://...&region=... (keys: HOARD_S3_ACCESS_KEY/..._SECRET_KEY)
    backup_url: str | None = None
    # Longest a backup's snapshot may take before it is abandoned (never an endless hang).
    backup_timeout: float = 3600.0
    # How often change logs are shipped, and the longest a log file stays open
    # (the lag of the point-in-time window).
    archive_interval: float = 5.0
    archive_rotate_seconds: float = 60.0
    # How often backup schedules and retention are looked at.
    schedule_interval: float = 30.0
    # How often maintenance windows are looked at (an open one applies pending settings).
    maintenance_interval: float = Field(30.0, gt=0)
    # How often storage use is compared with clusters' autoscaling thresholds.
    autoscale_interval: float = Field(10.0, gt=0)
    # How often the backup store is swept of uploads a crashed writer left; one is
    # removed once seen unfinished for longer than backup_timeout + this interval.
    sweep_interval: float = 600.0
    # Testing knobs: the named workflow step fails (to exercise compensation), or
    # those named (comma-separated) pause after their work and before it is
    # recorded, for pause_seconds (to crash Hoard there).
    fail_step: str | None = None
    pause_step: str | None = None
    pause_seconds: float = 3.0

    @property
    def pause_steps(self) -> set[str]:
        return {name.strip() for name in (self.pause_step or "").split(",") if name.strip()}

    @field_validator("db_uid_range")
    @classmethod
    def _uid_range(cls, value: str) -> str:
        first, sep, last = value.partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"{value!r} is not FIRST-LAST")
        if not 1000 <= int(first) <= int(last) < 2**31 - 1:
            raise ValueError(f"{value!r}: uids must lie within 1000-2147483646, first <= last")
        return value

    @property
    def uid_range(self) -> tuple[int, int]:
        first, _, last = self.db_uid_range.partition("-")
        return int(first), int(last)

    @cached_property
    def store_url(self) -> str:
        """SQLAlchemy URL of the state store (SQLite file unless told otherwise)."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{self.state_dir / 'state.sqlite'}"

    @cached_property
    def workflow_store_url(self) -> str:
        """URL of the durable-workflow system database (DBOS)."""
        if self.database_url:
            return libpq_url(self.store_url)
        return f"sqlite:///{self.state_dir / 'workflows.sqlite'}"

    @property
    def backup_store_url(self) -> str:
        return self.backup_url or f"file://{self.state_dir / 'backups'}"

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "nodes"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"


def libpq_url(url: str) -> str:
    """A store URL as libpq (and DBOS) take it: SQLAlchemy's driver name dropped,
    the password kept."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
