"""Worker membership: a lease per worker, takeover of a dead worker's workflows,
fencing, and the split of background work among the live workers.

- **Lease.** Every worker process holds a row in ``workers`` that it renews
  every third of ``HOARD_LEASE_SECONDS``. The store's clock decides expiry
  (PostgreSQL's ``clock_timestamp()``), so workers on different hosts need not
  agree on the time.
- **Takeover.** Each renewal also looks for leases that expired (or were given
  up by a graceful stop). A live worker claims one with a compare-and-set that
  bumps its epoch, then asks DBOS to recover that worker's pending workflows:
  DBOS puts them back on a queue, from which exactly one live worker takes each
  and runs it on from its last recorded step.
- **Fencing.** A worker's write transactions check, inside the transaction,
  that its row still has its epoch and is alive (``SELECT ... FOR SHARE``: a
  takeover's UPDATE waits for them, and they fail after it). A worker that
  finds its lease lost (a renewal refused, a fenced write, or simply no
  renewal for a lease's length, as after SIGSTOP) stops the process at once:
  it never acts on what it lost. Its supervisor starts it again, as a new
  incarnation with a new epoch.
- **Shards.** Clusters fall into ``SHARDS`` fixed shards. Rendezvous hashing
  over the live workers says who should own each; a worker gives a shard up
  only between its passes, and takes one only once nobody (alive) holds it,
  so no cluster is observed, archived or scheduled by two workers at once,
  and a pass reads only its worker's share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import ColumnElement, event, select, text, true, update
from sqlalchemy.orm import Session

from hoard.store import models
from hoard.store.db import Store

log = logging.getLogger(__name__)
LEASE_LOST_EXIT = 75  # the process's exit status when it stops for a lost lease
STALE_WAIT = 2.0  # seconds between looks while a previous incarnation's lease runs out
RELEASE_WAIT = 1.0  # seconds the lease thread waits for passes before giving shards up


def rendezvous(shard: int, workers: list[str]) -> str:
    """The worker that should own ``shard``: the highest hash of (shard, worker).
    When a worker comes or goes, only the shards it wins or held move."""
    return max(workers, key=lambda w: hashlib.sha256(f"{shard}/{w}".encode()).digest())


class PassGate:
    """Passes over owned shards run together; giving shards up waits for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._passes = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._passes += 1
        try:
            yield
        finally:
            with self._cond:
                self._passes -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout: float) -> Iterator[bool]:
        """Hold off new passes and wait up to ``timeout`` for running ones to end;
        yield whether they did (if not, the caller tries again later: the lease
        thread must never wait on a slow pass)."""
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            drained = self._cond.wait_for(lambda: self._passes == 0, timeout)
        try:
            yield drained
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Membership:
    """This process's lease, and what it owns."""

    def __init__(self, store: Store, worker_id: str, lease_seconds: float,
                 recover: Callable[[list[str]], object]) -> None:
        self.store = store
        self.worker_id = worker_id
        self.ttl = lease_seconds
        self.epoch = 0
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._recover = recover
        self._valid_until = 0.0
        self._owned: frozenset[int] = frozenset()
        self._gate = PassGate()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hoard-lease", daemon=True)
        self._sqlite = store.url.startswith("sqlite")

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """The lease's own transactions, which the fence must not judge."""
        with self.store.session() as s:
            s.info["unfenced"] = True
            yield s

    # --- the store's clock --------------------------------------------------------

    def _now(self, s: Session) -> dt.datetime:
        if self._sqlite:  # one process only (the store is locked): its clock is the clock
            return models.utcnow()
        value = s.scalar(text("SELECT clock_timestamp() AT TIME ZONE 'UTC'"))
        assert isinstance(value, dt.datetime)
        return value

    # --- joining, renewing, leaving ---------------------------------------------------

    def join(self, wait: float = 60.0) -> None:
        """Take this worker id's lease with a new epoch. A previous incarnation's
        lease that has not run out is waited for, unless its process is known
        dead (same host, no such pid) or the store admits one process anyway."""
        deadline = time.monotonic() + wait
        while True:
            started = time.monotonic()
            with self._session() as s:
                now = self._now(s)
                row = s.get(models.Worker, self.worker_id, with_for_update=True)
                if row is None or self._may_replace(row, now):
                    self.epoch = (row.epoch if row else 0) + 1
                    values = dict(epoch=self.epoch, state="alive", host=self.host, pid=self.pid,
                                  started_at=now, heartbeat_at=now,
                                  expires_at=now + dt.timedelta(seconds=self.ttl),
                                  taken_by=None)
                    if row is None:
                        s.add(models.Worker(id=self.worker_id, **values))
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                    break
                holder = f"pid {row.pid} on {row.host}, until {row.expires_at:%H:%M:%S} UTC"
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker id {self.worker_id!r} is held by a live worker "
                                   f"({holder}): give each worker its own HOARD_WORKER_ID")
            log.info("waiting for the previous lease of worker %s to run out (%s)",
                     self.worker_id, holder)
            time.sleep(STALE_WAIT)
        self._valid_until = started + self.ttl
        log.info("worker %s joined with epoch %d (lease %g s)", self.worker_id, self.epoch,
                 self.ttl)

    def _may_replace(self, row: models.Worker, now: dt.datetime) -> bool:
        if row.state != "alive" or row.expires_at < now or self._sqlite:
            return True
        if row.host == self.host and row.pid != self.pid:
            try:
                os.kill(row.pid, 0)
            except ProcessLookupError:
                return True  # that process is gone
            except PermissionError:
                return False
        return False

    def start(self) -> None:
        """Renew, take over and balance shards on a thread of their own."""
        self._beat()
        self._thread.start()

    def leave(self) -> None:
        """A graceful stop: give the shards back and end the lease now, so another
        worker takes over at once whatever this one did not finish."""
        self._stop.set()
        self._thread.join(timeout=self.ttl)
        with self._gate.exclusive(RELEASE_WAIT * 5) as drained, self._session() as s:
            if not drained:
                log.warning("worker %s leaves with a background pass still running",
                            self.worker_id)
            s.execute(update(models.ShardOwner).where(
                models.ShardOwner.worker_id == self.worker_id).values(worker_id=None))
            s.execute(update(models.Worker).where(
                models.Worker.id == self.worker_id, models.Worker.epoch == self.epoch,
                models.Worker.state == "alive").values(state="stopped", expires_at=self._now(s)))
        self._owned = frozenset()
        log.info("worker %s left (epoch %d)", self.worker_id, self.epoch)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._beat()
            except Exception:
                log.exception("lease renewal of worker %s failed", self.worker_id)
                self.guard()

    def _beat(self) -> None:
        started = time.monotonic()
        with self._session() as s:
            now = self._now(s)
            renewed = s.execute(update(models.Worker).where(
                models.Worker.id == self.worker_id, models.Worker.epoch == self.epoch,
                models.Worker.state == "alive",
            ).values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=self.ttl)))
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            self.lost("its lease was taken over")
        self._valid_until = started + self.ttl
        self._take_over()
        self._balance()

    # --- losing the lease ------------------------------------------------------------

    def lost(self, why: str) -> None:
        """Stop now: whatever this process would do next may already be another's."""
        log.critical("worker %s (epoch %d) lost its lease: %s; stopping at once",
                     self.worker_id, self.epoch, why)
        logging.shutdown()
        os._exit(LEASE_LOST_EXIT)

    def guard(self) -> None:
        """Stop if the lease may have run out (no renewal for its length). On
        SQLite there is no one to take over (the store admits one process), so a
        late renewal is only late."""
        if not self._sqlite and time.monotonic() > self._valid_until:
            self.lost(f"not renewed for {self.ttl:g} s")

    def fence(self, s: Session) -> None:
        """Inside a write transaction: go on only while the lease is ours. (On
        PostgreSQL the row is share-locked, so a takeover's update waits for the
        commit.) Sent as the driver's own statement: every write transaction of
        a worker runs it, and the ORM's path for it was a sixth of a worker's
        time in a burst of creates."""
        self.guard()
        conn = s.connection()
        held = conn.exec_driver_sql(_fence_sql(conn.dialect.name, conn.dialect.paramstyle),
                                    (self.worker_id, self.epoch)).first()
        if held is None:
            self.lost("a write was fenced off")

    # --- takeover -------------------------------------------------------------------

    def _take_over(self) -> None:
        with self._session() as s:
            now = self._now(s)
            gone = list(s.execute(select(models.Worker.id, models.Worker.epoch,
                                         models.Worker.state).where(
                models.Worker.id != self.worker_id,
                ((models.Worker.state.in_(("alive", "claimed")) & (models.Worker.expires_at < now))
                 | (models.Worker.state == "stopped")))))
        for worker_id, epoch, state in gone:
            with self._session() as s:
                now = self._now(s)
                claimed = s.execute(update(models.Worker).where(
                    models.Worker.id == worker_id, models.Worker.epoch == epoch,
                    models.Worker.state == state,
                ).values(state="claimed", epoch=epoch + 1, taken_by=self.worker_id,
                         expires_at=now + dt.timedelta(seconds=self.ttl)))
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another worker got there first
            self._recover([worker_id])
            with self._session() as s:
                s.execute(update(models.Worker).where(
                    models.Worker.id == worker_id, models.Worker.epoch == epoch + 1,
                    models.Worker.state == "claimed").values(state="taken"))
            log.warning("worker %s took over the workflows of worker %s (%s)",
                        self.worker_id, worker_id, "stopped" if state == "stopped"
                        else "lease expired")

    # --- shards ---------------------------------------------------------------------

    def _balance(self) -> None:
        with self._session() as s:
            now = self._now(s)
            live = list(s.scalars(select(models.Worker.id).where(
                models.Worker.state == "alive", models.Worker.expires_at >= now)))
            owners = {shard: worker for shard, worker in s.execute(
                select(models.ShardOwner.shard, models.ShardOwner.worker_id))}
        if self.worker_id not in live:
            live.append(self.worker_id)
        wanted = {n for n in owners if rendezvous(n, live) == self.worker_id}
        mine = {n for n, w in owners.items() if w == self.worker_id}
        if mine - wanted:
            with self._gate.exclusive(RELEASE_WAIT) as drained:
                if drained:  # else a pass still runs over them: next beat
                    with self._session() as s:
                        s.execute(update(models.ShardOwner).where(
                            models.ShardOwner.shard.in_(sorted(mine - wanted)),
                            models.ShardOwner.worker_id == self.worker_id
                        ).values(worker_id=None))
                    mine &= wanted
                    self._owned = frozenset(mine)
        free = [n for n in wanted - mine if owners[n] is None or owners[n] not in live]
        if free:
            with self._session() as s:
                for n in free:
                    s.execute(update(models.ShardOwner).where(
                        models.ShardOwner.shard == n,
                        models.ShardOwner.worker_id.is_(None) if owners[n] is None
                        else models.ShardOwner.worker_id == owners[n],
                    ).values(worker_id=self.worker_id, epoch=self.epoch))
                mine = set(s.scalars(select(models.ShardOwner.shard).where(
                    models.ShardOwner.worker_id == self.worker_id)))
        self._owned = frozenset(mine)  # what the store says is this worker's

    @contextmanager
    def pass_over_shards(self) -> Iterator[frozenset[int]]:
        """The shards a background pass may work on, held until the pass ends."""
        self.guard()
        with self._gate.shared():
            yield self._owned

    def owned(self) -> frozenset[int]:
        return self._owned


_current: Membership | None = None  # this process's, once it joined
_fence: list[tuple[str, Callable[..., None]]] = []  # install_fence's listeners on Session


def guard() -> None:
    """Stop at once if this worker's lease may be lost: steps and passes call it
    before they act, so a worker back from a pause never starts anything."""
    if _current is not None:
        _current.guard()


_pass_shards: ContextVar[frozenset[int] | None] = ContextVar("pass_shards", default=None)


@contextmanager
def background_pass() -> Iterator[None]:
    """One pass of a background loop over this worker's shards (every shard when
    the process is not a member, as in engine-level tests)."""
    if _current is None:
        yield
        return
    with _current.pass_over_shards() as shards:
        token = _pass_shards.set(shards)
        try:
            yield
        finally:
            _pass_shards.reset(token)


def my_clusters() -> ColumnElement[bool]:
    """A filter on clusters: those in the shards of the current pass."""
    shards = _pass_shards.get()
    if shards is None:
        return true()
    return models.Cluster.shard.in_(sorted(shards))


def owns_shard(shard: int) -> bool:
    """Whether the current pass covers ``shard`` (for work not tied to a cluster row)."""
    shards = _pass_shards.get()
    return shards is None or shard in shards


def _fence_sql(dialect: str, paramstyle: str) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    lock = " FOR SHARE" if dialect == "postgresql" else ""
    return (f"SELECT epoch FROM {models.Worker.__tablename__} WHERE id = {mark} "
            f"AND epoch = {mark} AND state = 'alive'{lock}")


def install_fence(store: Store, membership: Membership) -> None:
    """Every transaction of this process that writes is fenced by the lease."""

    def mark(state: object) -> None:
        orm = getattr(state, "is_insert", False) or getattr(state, "is_update", False) \
            or getattr(state, "is_delete", False)
        if orm:
            state.session.info["wrote"] = True  # type: ignore[attr-defined]

    def check(session: Session) -> None:
        wrote = session.info.pop("wrote", False) or session.new or session.dirty \
            or session.deleted
        if wrote and not session.info.get("unfenced"):
            membership.fence(session)

    global _current
    _current = membership
    event.listen(Session, "do_orm_execute", mark)
    event.listen(Session, "before_commit", check)
    _fence.extend([("do_orm_execute", mark), ("before_commit", check)])


def remove_fence() -> None:
    """Undo ``install_fence`` once the worker has left (``runtime.shutdown``), for a
    process that goes on without being one (a test running a worker in its own
    process): its later writes are no longer a left member's. A worker process
    exits instead, so a straggling step never writes unfenced."""
    global _current
    while _fence:
        name, listener = _fence.pop()
        event.remove(Session, name, listener)
    _current = None


