"""Operations recorded by API processes, started at once by the worker that
owns their cluster's shard.

An API process commits an operation, then announces it on the store
(PostgreSQL ``NOTIFY`` on ``CHANNEL``, the payload ``"<operation id>
<shard>"``). Every worker listens; the one that owns the shard starts the
operation's workflow (workflow id = operation id), the others ignore it.

Why not DBOS's queue, which did this before: a queue is polled, three
statements per worker every poll whether there is work or not, and a poll
claims the whole backlog, so a burst of 50 creates ran 29/16/5 on three
workers. A notification costs nothing while idle, arrives within a
millisecond, and the shards spread operations over workers as evenly as
they spread the observer's passes.

What a notification can miss (no worker listening at that moment, a shard
between owners, a lost connection, an API process killed between its commit
and its announcement) a worker's outbox pass starts once it is a second old
(``runtime.resume_unstarted``, ``runtime.OUTBOX_AGE``). Starting one operation twice is harmless:
DBOS runs a workflow id once, and a second start only attaches to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import select, text

from hoard.domain.status import OperationStatus
from hoard.settings import libpq_url
from hoard.store import models
from hoard.store.db import Store
from hoard.store.models import shard_of

log = logging.getLogger(__name__)
CHANNEL = "hoard_operations"
WAIT = 1.0  # seconds a listen waits before looking at the stop flag
RECONNECT = 2.0  # seconds between attempts after the listening connection failed
BATCH = 100  # notifications started together at most (one query loads them)


def payload(op: models.Operation) -> str:
    assert op.cluster_id is not None
    return f"{op.id} {shard_of(op.cluster_id)}"


def announce(store: Store, op: models.Operation) -> None:
    """Tell the workers about ``op``, committed just before (a notification is
    delivered only once its transaction commits: this one is its own)."""
    with store.engine.connect() as conn:
        conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                     {"channel": CHANNEL, "payload": payload(op)})
        conn.commit()


def _parse(raw: str) -> tuple[str, int] | None:
    parts = raw.split()
    if len(parts) != 2 or not parts[1].isdigit():
        log.warning("ignored a malformed operation notification: %r", raw[:200])
        return None
    return parts[0], int(parts[1])


class Dispatcher:
    """A worker's listener: starts the announced operations of its own shards.

    ``owned`` says which shards are this worker's now; ``start`` starts one
    operation's workflow here."""

    def __init__(self, store: Store, owned: Callable[[], frozenset[int]],
                 start: Callable[[models.Operation], None]) -> None:
        self.store = store
        self._owned = owned
        self._start = start
        self._conninfo = libpq_url(store.url)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hoard-dispatch", daemon=True)

    def start(self, wait: float = 10.0) -> None:
        """Start listening; return once the listen is in place (or after ``wait``)."""
        self._thread.start()
        self._listening.wait(wait)

    def stop(self) -> None:
        """No new operations from here on (a draining worker takes none)."""
        self._stop.set()
        self._thread.join(timeout=WAIT * 3)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception:
                self._listening.clear()
                log.exception("listening for operations failed; again in %g s (the outbox "
                              "pass starts what is missed meanwhile)", RECONNECT)
                self._stop.wait(RECONNECT)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True,
                             application_name="hoard-dispatch") as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            while not self._stop.is_set():
                batch = [n.payload for n in conn.notifies(timeout=WAIT, stop_after=1)]
                if not batch:
                    continue
                # Whatever else already arrived goes in the same batch.
                batch += [n.payload for n in conn.notifies(timeout=0, stop_after=BATCH - 1)]
                self.dispatch(batch)

    def dispatch(self, raw: Iterable[str]) -> int:
        """Start the operations among ``raw`` whose shard this worker owns; how many."""
        owned = self._owned()
        ids = [p[0] for p in map(_parse, raw) if p is not None and p[1] in owned]
        if not ids:
            return 0
        with self.store.session() as s:
            ops = list(s.scalars(select(models.Operation).where(
                models.Operation.id.in_(ids),
                models.Operation.status == OperationStatus.RUNNING)))
            s.expunge_all()
        for op in ops:
            try:
                self._start(op)
            except Exception:
                log.exception("starting operation %s failed; the outbox pass tries again", op.id)
        return len(ops)
