"""MariaDB backups: full backups with ``mariadb-backup``, binlog archiving and
point-in-time restore. Mixed into :class:`hoard.engines.mariadb.MariaDB`.

- Every node writes a row-based binary log to ``binlog/`` (see ``binlog_settings``).
  Hoard ships closed files and removes them; the server never expires any itself,
  so a file is never lost before it is shipped.
- ``backup`` streams ``mariadb-backup --backup --stream=xbstream``; its position in
  the binlog goes into the meta (``binlog_file``, ``binlog_pos``, ``binlog_gtid``).
- ``restore`` extracts and prepares the stream in a scratch directory, stages the
  logs beside it with a plan, and publishes the data directory with one rename.
  ``finish_restore`` replays the staged binlogs from the backup's position through
  ``mariadb-binlog | mariadb``, up to the target.
- ``backup_incremental`` streams only the pages changed since an earlier backup
  (``--incremental-lsn``: the base's ``to_lsn``, which every backup records);
  ``restore_chain`` prepares the full backup, applies each incremental to it in
  order (``--incremental-dir``) and then goes on as ``restore`` does, from the
  last one's binlog position. ``restore`` is a chain of one.

Target times: ISO-8601, ``Z`` or any offset (``datetime.isoformat()`` of an aware
UTC datetime is what Hoard passes); a time without an offset is taken as UTC. The
binlog stamps each event with the whole second its statement started, so the
target is truncated to the second: the restore holds every transaction stamped
before that second and none stamped at or after it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import Backups, LogMark, NodeContext
from hoard.engines.mariadb.binlog import last_transaction, split_second, stop_datetime

if TYPE_CHECKING:
    import pymysql

MARIADB_BACKUP = "/usr/bin/mariadb-backup"
MBSTREAM = "/usr/bin/mbstream"
MARIADB_BINLOG = "/usr/bin/mariadb-binlog"
MARIADB_CLIENT = "/usr/bin/mariadb"
FORMAT = "mariadb-backup-xbstream"

DATA = PurePosixPath("data")
TMP = PurePosixPath("tmp")
BINLOG_DIR = PurePosixPath("binlog")
BINLOG = BINLOG_DIR / "binlog"  # the server's log_bin basename
TLS_CA = PurePosixPath("tls/ca.crt")  # Hoard's CA, for the tools' own connections
BACKUP_WORK = PurePosixPath("backup.work")  # the tool's scratch and credentials
RESTORE_WORK = PurePosixPath("restore.work")  # the backup, extracted and prepared
RESTORE_INC = PurePosixPath("restore.inc")  # an incremental backup, extracted
STAGED = PurePosixPath("restore_binlog")  # logs to replay, and the plan
PLAN = STAGED / "plan.json"
REPLAYING = STAGED / "replaying.json"  # the plan, while its replay runs
MAX_PACKET = 1 << 30  # the largest max_allowed_packet there is
CHECKPOINT_WAIT = 30.0  # seconds
LOG_NAME = re.compile(r"binlog\.(\d{6,})")
# Streamed by mariadb-backup after every data file, so a stream cut short misses them
# (and xtrabackup_binlog_info, when the server had its binlog on).
BACKUP_FILES = ("xtrabackup_checkpoints", "backup-my.cnf", "xtrabackup_info")
RESTORED = DATA / "xtrabackup_info"  # data laid down by a restore


def binlog_settings(node_id: str, runner: NodeRunner) -> dict[str, str]:
    """What the server's configuration needs for archiving."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return {
        "log_bin": runner.abspath(BINLOG),
        "log_bin_index": runner.abspath(BINLOG_DIR / "binlog.index"),
        "binlog_format": "ROW",
        "server_id": str(int.from_bytes(digest[:4], "big") % 4294967294 + 1),
        "sync_binlog": "1",
        "expire_logs_days": "0",  # Hoard removes each file once it is shipped
        "max_binlog_size": "64M",
        # Events over 256 bytes are compressed (zlib): less of the node's disk, and
        # smaller archives (Hoard encrypts them, after which nothing compresses).
        "log_bin_compress": "ON",
    }


def _utc(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(UTC)


def _option(value: str) -> str:
    """A value for an option file, quoted."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_number(name: str) -> int:
    found = LOG_NAME.fullmatch(name)
    if not found:
        raise ValueError(f"not a binlog file name: {name!r}")
    return int(found[1])


def _binlog_info(text: str) -> tuple[str, int, str]:
    """``xtrabackup_binlog_info``: file, position and GTID, tab-separated."""
    fields = text.split()
    if len(fields) < 2 or not LOG_NAME.fullmatch(fields[0]) or not fields[1].isdigit():
        raise ValueError(f"unexpected binlog position in the backup: {text.strip()!r}")
    return fields[0], int(fields[1]), fields[2] if len(fields) > 2 else ""


def _checkpoints(text: str) -> dict[str, str]:
    """``xtrabackup_checkpoints``: ``key = value`` lines (backup_type, from_lsn, to_lsn…)."""
    return {key.strip(): value.strip() for key, sep, value in
            (line.partition("=") for line in text.splitlines()) if sep}


def _check_meta(ctx: NodeContext, meta: Mapping[str, str]) -> None:
    if meta.get("format") != FORMAT:
        raise ValueError(f"not a MariaDB backup: format {meta.get('format')!r}")
    if meta.get("version") != ctx.version:
        raise ValueError(f"the backup is of MariaDB {meta.get('version')}, "
                         f"this node runs {ctx.version}")


def _check_second(runner: NodeRunner, replay: list[str], position: int,
                  target: datetime) -> None:
    """Refuse a target that falls inside a second in which transactions were
    logged: MariaDB records whole seconds, so which of them came by ``target``
    cannot be known, and a restore must not guess."""
    if target.microsecond == 999_999:
        return  # the second's last microsecond: all of them came by then
    split = split_second((runner.read_stream(STAGED / name) for name in replay), position,
                         target)
    if split:
        second = target.replace(microsecond=0)
        before = (second - timedelta(microseconds=1)).isoformat()
        after = (second + timedelta(seconds=1, microseconds=-1)).isoformat()
        raise ValueError(
            f"MariaDB records commit times to the second, and {split} binlog events fall in "
            f"the second of {target.isoformat()}: which of them came before it cannot be "
            f"known. Restore to {before} (without them) or {after} (with them)")


class MariaDBBackups(Backups):
    log_kind = "binlog"

    if TYPE_CHECKING:
        def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                     io_timeout: float | None = None) -> pymysql.Connection: ...

    @staticmethod
    def _install_ca(runner: NodeRunner, ca_file: str) -> str:
        """Hoard's CA in the node's volume, where tools running beside it can read it."""
        with open(ca_file, "rb") as fh:
            runner.write_file(TLS_CA, fh.read(), 0o644)
        return runner.abspath(TLS_CA)

    def _read(self, runner: NodeRunner, path: PurePosixPath) -> str:
        return b"".join(runner.read_stream(path)).decode()

    def backup(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
               meta: dict[str, str]) -> Iterator[bytes]:
        """The stream holds the data files, the redo log written while they were
        copied and the binlog position they are consistent with. The tool takes
        no password from its environment, so it reads the account from an option
        file (0600, in the node's volume) removed when the stream ends."""
        yield from self._backup(ctx, ca_file, runner, meta, None)

    def backup_incremental(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                           meta: dict[str, str], base: Mapping[str, str]) -> Iterator[bytes]:
        """Only the pages changed since ``base`` (whole files for the engines that
        have no LSN, such as Aria), with the same position and meta as ``backup``."""
        _check_meta(ctx, base)
        if not base.get("to_lsn", "").isdigit():
            raise ValueError("the base backup records no LSN (to_lsn): take a full backup")
        yield from self._backup(ctx, ca_file, runner, meta, base["to_lsn"])

    def _backup(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                meta: dict[str, str], from_lsn: str | None) -> Iterator[bytes]:
        runner.remove_tree(BACKUP_WORK)
        options = BACKUP_WORK / "client.cnf"
        runner.write_file(options, (
            "[mariadb-backup]\n"
            f"user = {_option(ctx.service.user)}\n"
            f"password = {_option(ctx.service.password)}\n"
        ).encode())
        info = BACKUP_WORK / "info"
        runner.write_file(info / ".keep", b"")
        argv = [
            MARIADB_BACKUP, f"--defaults-file={runner.abspath(options)}", "--backup",
            "--stream=xbstream", f"--datadir={runner.abspath(DATA)}",
            f"--target-dir={runner.abspath(BACKUP_WORK)}",
            f"--extra-lsndir={runner.abspath(info)}", f"--tmpdir={runner.abspath(TMP)}",
            f"--host={ctx.host}", f"--port={ctx.port}",
            f"--ssl-ca={self._install_ca(runner, ca_file)}", "--ssl-verify-server-cert",
        ]
        if from_lsn is not None:
            argv.append(f"--incremental-lsn={from_lsn}")
        try:
            yield from runner.stream(argv)
            found = re.search(r"filename '([^']+)', position '(\d+)'(?:, GTID of the last "
                              r"change '([^']*)')?", self._read(runner, info / "xtrabackup_info"))
            lsns = _checkpoints(self._read(runner, info / "xtrabackup_checkpoints"))
        finally:
            runner.remove_tree(BACKUP_WORK)
        meta.update({"format": FORMAT, "version": ctx.version, "to_lsn": lsns["to_lsn"],
                     "end_time": datetime.now(UTC).isoformat()})
        if from_lsn is not None:
            meta.update({"kind": "incremental", "from_lsn": lsns.get("from_lsn", from_lsn)})
        if found:
            meta.update({"binlog_file": found[1], "binlog_pos": found[2],
                         "binlog_gtid": found[3] or ""})

    def rotate_log(self, ctx: NodeContext, ca_file: str) -> LogMark | None:
        """Starts a new binlog file, then waits until the server's binlog checkpoint
        names it: until then crash recovery may still need the closed files, which
        Hoard removes once shipped. The checkpoint follows the next durable redo log
        write: flushing the engine logs makes that at once, except with
        ``innodb_flush_log_at_trx_commit`` 0 or 2 (within a second then).

        The mark: a transaction is stamped with the second its last statement
        began, and reaches the binlog when it commits. So the closed file holds
        every transaction stamped before the oldest statement still running (or
        now, when none is); Hoard's own and the server's threads do not count."""
        with self._connect(ctx, ca_file) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT UTC_TIMESTAMP(6), MAX(TIME_MS) FROM information_schema.PROCESSLIST "
                "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Sleep', 'Daemon', "
                "'Binlog Dump', 'Killed') AND USER NOT IN ('system user', 'event_scheduler')")
            now, running_ms = cur.fetchone()
            at = (now - timedelta(milliseconds=float(running_ms or 0))).replace(tzinfo=UTC)
            # LOCAL: not written to the binlog. A logged FLUSH would put an event of
            # Hoard's own into every rotation's second, and a restore to a time in
            # that second could never be told apart from it (nor do replicas need it).
            cur.execute("FLUSH LOCAL BINARY LOGS")
            cur.execute("FLUSH LOCAL ENGINE LOGS")
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            if row is None:
                return None  # the binlog is off (until the server restarts with this config)
            closed_before = _log_number(row[0])
            mark = LogMark(f"binlog.{closed_before - 1:06d}", at)
            file, position, deadline = str(row[0]), 4, time.monotonic() + CHECKPOINT_WAIT
            while True:  # read the new file's events as they come, a page at a time
                cur.execute("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 1000", (file, position))
                events = cur.fetchall()
                if any(e[2] == "Binlog_checkpoint" and LOG_NAME.fullmatch(e[5])
                       and _log_number(e[5]) >= closed_before for e in events):
                    return mark
                position = int(events[-1][4]) if events else position
                rotated = [e[5].split(";")[0] for e in events if e[2] == "Rotate"]
                if rotated:  # full already: the checkpoint comes in the next file
                    file, position = rotated[-1], 4
                elif len(events) < 1000:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the server has not checkpointed {row[0]} after "
                                           f"{CHECKPOINT_WAIT:g} s: the closed binlogs are "
                                           "still needed for its crash recovery")
                    time.sleep(0.02)

    def last_commit(self, ctx: NodeContext, runner: NodeRunner,
                    path: PurePosixPath) -> datetime | None:
        return last_transaction(runner.read_stream(path))

    def closed_logs(self, runner: NodeRunner) -> list[PurePosixPath]:
        """Every binlog file but the newest, which the server is writing."""
        names = sorted((n for n in runner.list_dir(BINLOG_DIR) if LOG_NAME.fullmatch(n)),
                       key=_log_number)
        return [BINLOG_DIR / name for name in names[:-1]]

    def restore(self, ctx: NodeContext, runner: NodeRunner, backup: Iterable[bytes],
                meta: Mapping[str, str], logs: list[tuple[str, Iterable[bytes]]],
                target: str | None) -> None:
        """Extracts and prepares the backup in a scratch directory, stages the logs
        from the backup's binlog file on (earlier ones are skipped; a gap is an
        error) and publishes ``data`` by renaming the scratch directory: either a
        complete restore exists, or none and the next attempt starts over."""
        self.restore_chain(ctx, runner, [(backup, meta)], logs, target)

    def restore_chain(self, ctx: NodeContext, runner: NodeRunner,
                      chain: list[tuple[Iterable[bytes], Mapping[str, str]]],
                      logs: list[tuple[str, Iterable[bytes]]], target: str | None) -> None:
        """As ``restore``, applying each incremental backup to the prepared full one
        (each in its own scratch directory, removed once applied); the logs follow
        on from the last backup's binlog position."""
        if not chain:
            raise ValueError("no backup to restore")
        for _, each in chain:
            _check_meta(ctx, each)
        if chain[0][1].get("kind") == "incremental":
            raise ValueError("broken incremental chain: it starts with an incremental backup")
        for (_, before), (_, after) in pairwise(chain):
            if after.get("kind") != "incremental" or not after.get("from_lsn") \
                    or after.get("from_lsn") != before.get("to_lsn"):
                raise ValueError(f"broken incremental chain: a backup from LSN "
                                 f"{after.get('from_lsn')} follows one to LSN "
                                 f"{before.get('to_lsn')}")
        meta = chain[-1][1]
        if target is not None and _utc(target) < _utc(meta["end_time"]):
            raise ValueError(f"target {target} is before the backup ended "
                             f"({meta['end_time']}): restore from an earlier backup")
        numbers = [_log_number(name) for name, _ in logs]
        if runner.exists(RESTORED):
            return  # published by the rename below: a complete restore
        if runner.exists(DATA):
            raise RuntimeError("this node already has data of its own")
        scratch = (RESTORE_WORK, RESTORE_INC, STAGED)
        for path in scratch:
            runner.remove_tree(path)
        try:
            work, inc = runner.abspath(RESTORE_WORK), runner.abspath(RESTORE_INC)
            runner.run(["mkdir", "-m", "700", "--", runner.abspath(STAGED)])
            prepare = [MARIADB_BACKUP, "--prepare", f"--target-dir={work}", f"--tmpdir={work}"]
            for index, (backup, _) in enumerate(chain):
                into = RESTORE_INC if index else RESTORE_WORK
                runner.run(["mkdir", "-m", "700", "--", runner.abspath(into)])
                runner.feed([MBSTREAM, "-x", "-C", runner.abspath(into)], backup)
                missing = [f for f in BACKUP_FILES if not runner.exists(into / f)]
                if missing:
                    raise ValueError("the backup is incomplete (no " + ", ".join(missing) + ")")
                # The full backup is prepared first, then each incremental applied to it
                # (since 10.2 the tool needs no --apply-log-only for that).
                runner.run(prepare + ([f"--incremental-dir={inc}"] if index else []),
                           timeout=3600)
                runner.remove_tree(RESTORE_INC)
            # After an incremental prepare, this is the last incremental's position.
            if runner.exists(RESTORE_WORK / "xtrabackup_binlog_info"):
                file, position, gtid = _binlog_info(
                    self._read(runner, RESTORE_WORK / "xtrabackup_binlog_info"))
            elif logs:
                raise ValueError("the backup has no binlog position (binary logging was off): "
                                 "logs cannot be replayed after it")
            else:
                file, position, gtid = "binlog.000000", 4, ""
            first = _log_number(file)
            replay: list[str] = []
            for (name, chunks), number in zip(logs, numbers, strict=True):
                if number < first:
                    continue  # before the backup
                expected = first + len(replay)
                if number != expected:
                    raise ValueError(f"binlog file {name} given, binlog.{expected:06d} expected "
                                     "(the logs must follow on from the backup, without gaps)")
                runner.feed(["sh", "-c", 'cat > "$0"', runner.abspath(STAGED / name)], chunks)
                replay.append(name)
            if target is not None and replay:
                _check_second(runner, replay, position, _utc(target))
            plan = {"file": file, "position": position, "gtid": gtid, "replay": replay,
                    "target": target}
            runner.write_file(PLAN, json.dumps(plan).encode())
            runner.rename(RESTORE_WORK, DATA)
        except BaseException:
            for path in scratch:
                runner.remove_tree(path)
            raise

    def finish_restore(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                       target: str | None) -> None:
        """Replays the staged binlogs, the first from the backup's position, up to
        ``target``. An interrupted replay cannot be resumed (part of it is
        applied): it raises, and the node must be restored again."""
        if runner.exists(REPLAYING):
            raise RuntimeError("an earlier binlog replay on this node was interrupted; "
                               "restore a new node")
        if not runner.exists(PLAN):
            return  # nothing staged, or already replayed
        plan = json.loads(self._read(runner, PLAN))
        if plan["replay"]:
            argv = [MARIADB_BINLOG, "--no-defaults", f"--start-position={plan['position']}"]
            if target is not None:
                argv.append(f"--stop-datetime={stop_datetime(_utc(target))}")
            argv += [runner.abspath(STAGED / name) for name in plan["replay"]]
            client = [MARIADB_CLIENT, "--no-defaults", "--binary-mode", "--batch",
                      f"--max-allowed-packet={MAX_PACKET}", f"--host={ctx.host}",
                      f"--port={ctx.port}", f"--user={ctx.service.user}",
                      f"--ssl-ca={self._install_ca(runner, ca_file)}",
                      "--ssl-verify-server-cert"]
            # A row event as large as the source allowed, once in base64, can exceed
            # this node's limit (the same setting): lift it for the replay's session.
            with self._connect(ctx, ca_file) as conn, conn.cursor() as cur:
                cur.execute("SELECT @@global.max_allowed_packet")
                packet = int(cur.fetchone()[0])
                cur.execute(f"SET GLOBAL max_allowed_packet = {MAX_PACKET}")
                runner.rename(PLAN, REPLAYING)  # from here on, a retry would apply twice
                try:
                    # TZ: mariadb-binlog reads --stop-datetime in its own time zone.
                    runner.feed(client, runner.stream(argv, env={"TZ": "UTC"}),
                                env={"MYSQL_PWD": ctx.service.password})
                finally:
                    cur.execute(f"SET GLOBAL max_allowed_packet = {packet}")
        runner.remove_tree(STAGED)
