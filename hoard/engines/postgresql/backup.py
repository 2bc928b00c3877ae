"""PostgreSQL backups: pg_basebackup, continuous WAL archiving, point-in-time restore.

- Every node archives each finished WAL segment into ``archive/`` on its volume
  (``archive_settings``); Hoard ships those files and removes them.
- A backup is ``pg_basebackup`` as one tar on stdout, WAL included (``-X fetch``)
  and a backup manifest injected, so it restores on its own.
- A restore unpacks the tar into a scratch directory (written back to disk as
  it goes), verifies it against its manifest (a cut-short stream fails here),
  stages the WAL to replay under ``recovery/`` and only then renames the
  scratch directory to ``data``. The first start replays the WAL (archive
  recovery) and promotes, which ``finish_restore`` waits for.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import psycopg

from hoard.domain.nodes import NodeRunner
from hoard.engines.base import Backups, LogMark, NodeContext

DATA = PurePosixPath("data")
DATA_RESTORE = PurePosixPath("data.restore")
ARCHIVE = PurePosixPath("archive")  # closed WAL segments waiting to be shipped
RECOVERY = PurePosixPath("recovery")  # restore scratch, removed once the node is promoted
RECOVERY_WAL = RECOVERY / "wal"
RECOVERY_CONF = RECOVERY / "recovery.conf"  # included (if it exists) by postgresql.conf
CA_CERT = PurePosixPath("tls/ca.crt")  # for pg_basebackup, which runs as the node's user
SERVER_LOG = PurePosixPath("log/server.log")  # where the local provider keeps server output
FORMAT = "pg_basebackup-tar"
# tar reads its input in records of 20 blocks (10 KiB) by default: from a pipe, each
# read lets Hoard's write of the next MiB go on for 10 KiB, and the two take turns
# a hundred thousand times per GiB. Records of 1 MiB (2048 blocks), reassembled from
# short pipe reads, take 1.5 s down to 0.9 s for 1 GiB here.
TAR_EXTRACT = ["tar", "-x", "--blocking-factor=2048", "--read-full-records", "-f", "-"]

ARCHIVE_TIMEOUT = 60  # seconds: the restore window never lags further behind
ROTATE_WAIT = 5.0  # seconds rotate_log waits for the archiver to copy the closed segment
RECOVERY_STALL = 300.0  # seconds finish_restore waits without replay progress
STOPPED_GRACE = 2.0  # seconds without a server (no pid file) before recovery counts as failed
SEGMENT_SIZE = 16 << 20  # initdb's default, which bootstrap keeps
SEGMENTS_PER_ID = (1 << 32) // SEGMENT_SIZE

# Archived names: segments, timeline histories, backup histories, a timeline's
# last partial segment (archived after a promotion).
_LOG_NAME = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
_SEGMENT = re.compile(r"[0-9A-F]{24}")
_XACT_END = re.compile(r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
# A hot standby (the restored node while it replays) needs at least the source's values.
HOT_STANDBY_SETTINGS = ("max_connections", "max_worker_processes", "max_wal_senders",
                        "max_prepared_transactions", "max_locks_per_transaction")


def conf_value(value: str) -> str:
    """A value quoted for postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def archive_settings(runner: NodeRunner) -> dict[str, str]:
    """Settings that archive each finished WAL segment into ``archive/``: copied
    under a temporary name, synced and renamed, so a listed file is whole. A file
    already there (a retry after a crash) counts as archived if identical."""
    d = shlex.quote(runner.abspath(ARCHIVE))
    command = (f"if test -f {d}/%f; then cmp -s %p {d}/%f; else "
               f"cp %p {d}/%f.tmp && sync {d}/%f.tmp && mv {d}/%f.tmp {d}/%f && sync {d}; fi")
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": command,
        "archive_timeout": str(ARCHIVE_TIMEOUT),
        "max_wal_senders": "10",  # pg_basebackup uses one
    }


def ensure_archive_dir(runner: NodeRunner) -> None:
    runner.run(["mkdir", "-p", "-m", "0700", runner.abspath(ARCHIVE)])


@contextmanager
def _written_back(runner: NodeRunner, path: str) -> Iterator[None]:
    """While the block runs, the filesystem holding ``path`` writes its dirty pages
    to disk, one syncfs after another. A restored node's first start syncs its
    whole volume before recovery (``recovery_init_sync_method = syncfs``): left to
    then, the gigabyte tar has just written goes to disk while nothing else
    happens; written back during the extraction and verification, it overlaps
    work that keeps the CPU busy instead. A 1 GB restore here: start 1.4 s ->
    0.2 s, restore data 1.5 s -> 1.9 s, the whole restore 3.2 s -> 2.5 s."""
    done = threading.Event()

    def sync() -> None:
        while not done.is_set():
            try:
                runner.run(["sync", "--file-system", path])
            except Exception:  # best effort: the start syncs anyway
                return
            done.wait(0.05)

    syncer = threading.Thread(target=sync, name="restore-writeback", daemon=True)
    syncer.start()
    try:
        yield
    finally:
        done.set()
        syncer.join()


def _utc(value: str) -> datetime:
    """An ISO-8601 time (UTC unless it says otherwise) as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"bad restore target time {value!r}: expected ISO-8601") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _segno(name: str) -> tuple[int, int]:
    """(timeline, segment number) of a WAL segment name."""
    return int(name[:8], 16), int(name[8:16], 16) * SEGMENTS_PER_ID + int(name[16:24], 16)


def _check_names(names: list[str]) -> None:
    for name in names:
        if not _LOG_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a WAL file name")


def _check_gaps(names: list[str], backup_end: str) -> None:
    """Refuse gaps in the WAL that follows the backup: replay would stop at the
    first missing segment, and without a target that would pass for success."""
    after = sorted(n for n in names if _SEGMENT.fullmatch(n) and n > backup_end)
    expected = (backup_end[:8], _segno(backup_end)[1] + 1)
    for name in after:
        segno = _segno(name)[1]
        if name[:8] == expected[0] and segno != expected[1]:
            raise ValueError(f"WAL is missing before {name} (the backup ends in {backup_end})")
        expected = (name[:8], segno + 1)


def _backup_end(runner: NodeRunner) -> str:
    """The WAL segment a restored backup ends in, from its manifest's WAL range."""
    tail = b""
    for chunk in runner.read_stream(DATA_RESTORE / "backup_manifest"):
        tail = (tail + chunk)[-65536:]
    ranges = re.findall(rb'"Timeline": (\d+), "Start-LSN": "[0-9A-F/]+", '
                        rb'"End-LSN": "([0-9A-F]+)/([0-9A-F]+)"', tail)
    if not ranges:
        raise ValueError("the backup's manifest has no WAL range")
    tli, high, low = ranges[-1]
    segno = ((int(high, 16) << 32) + int(low, 16) - 1) // SEGMENT_SIZE
    return f"{int(tli):08X}{segno // SEGMENTS_PER_ID:08X}{segno % SEGMENTS_PER_ID:08X}"


class PostgreSQLBackups(Backups):
    """The ``Backups`` ability of :class:`hoard.engines.postgresql.PostgreSQL`."""

    log_kind = "wal"
    logs_shared_by_members = True  # a segment is named by timeline and position

    @abstractmethod
    def _bin(self, version: str, tool: str) -> str: ...

    @abstractmethod
    def _connect(self, ctx: NodeContext, ca_file: str, timeout: float = 10,
                 dbname: str = "postgres") -> psycopg.Connection: ...

    @abstractmethod
    def settings(self, ctx: NodeContext) -> dict[str, str]: ...

    # --- taking backups and shipping WAL ------------------------------------------

    def backup(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
               meta: dict[str, str]) -> Iterator[bytes]:
        runner.write_file(CA_CERT, Path(ca_file).read_bytes(), 0o644)
        with self._connect(ctx, ca_file) as conn:
            start = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            limits = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                  (list(HOT_STANDBY_SETTINGS),)).fetchall()
        conninfo = " ".join(f"{k}={conf_value(str(v))}" for k, v in {
            "host": ctx.host, "port": ctx.port, "user": ctx.service.user,
            "sslmode": "verify-full", "sslrootcert": runner.abspath(CA_CERT),
            "application_name": "hoard-backup",
        }.items())
        # One tar on stdout (a tenant cannot create tablespaces), WAL and manifest inside.
        yield from runner.stream(
            [self._bin(ctx.version, "pg_basebackup"), "-d", conninfo, "-D", "-", "-F", "tar",
             "-X", "fetch", "--checkpoint=fast", "--no-password", "--label=hoard"],
            env={"PGPASSWORD": ctx.service.password},
        )
        with self._connect(ctx, ca_file) as conn:
            end = conn.execute("SELECT now(), pg_walfile_name(pg_current_wal_lsn())").fetchone()
        assert start is not None and end is not None
        meta.update({
            "format": FORMAT,
            "version": ctx.version,
            "start_wal": start[0],  # at or before the backup's first WAL segment
            "stop_wal": end[1],  # at or after its last
            "timeline": str(int(end[1][:8], 16)),
            "end_time": end[0].astimezone(UTC).isoformat(),  # server clock, after the stop
            **{name: value for name, value in limits},
        })

    def rotate_log(self, ctx: NodeContext, ca_file: str) -> LogMark | None:
        with self._connect(ctx, ca_file) as conn:
            # The time first: a commit stamped before it has its record before the
            # switch (a commit's time is taken as its record is written). The switch
            # closes the current segment only if WAL was written since the last one;
            # either way the name is of the last segment holding WAL before it.
            row = conn.execute("SELECT clock_timestamp(), current_setting('archive_mode')"
                               ).fetchone()
            assert row is not None
            at, mode = row
            if mode == "off":
                return None  # configured before archiving was; archives after its restart
            switched = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert switched is not None
            closed = str(switched[0])
            deadline = time.monotonic() + ROTATE_WAIT
            while True:
                archived, failed = conn.execute(
                    "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
                ).fetchone() or (None, None)
                if archived and archived[:24] >= closed:
                    return LogMark(closed, at.astimezone(UTC))
                if time.monotonic() > deadline:
                    if failed and failed[:24] >= closed:
                        raise RuntimeError(f"WAL archiving is failing (at {failed}); "
                                           "see the server log")
                    # The archiver is behind: the file is shipped next time, and the
                    # mark counts once it is.
                    return LogMark(closed, at.astimezone(UTC))
                time.sleep(0.05)

    def last_commit(self, ctx: NodeContext, runner: NodeRunner,
                    path: PurePosixPath) -> datetime | None:
        if not _SEGMENT.fullmatch(path.name):
            return None  # a history file or a backup label: no transactions
        ends, _ = self._commit_times(ctx, runner, runner.abspath(path.parent), path.name)
        return max(ends, default=None)

    def _commit_times(self, ctx: NodeContext, runner: NodeRunner, wal_dir: str,
                      name: str) -> tuple[list[datetime], bool]:
        """The commit and abort times pg_waldump finds in one segment, and whether
        it read the segment to its end. It stops early (exit 1, after printing what
        came before) at a damaged record, or at a last record that goes on into a
        next segment it was not given."""
        waldump = shlex.quote(self._bin(ctx.version, "pg_waldump"))
        out = runner.run(["sh", "-c", f'{waldump} --path "$1" --rmgr=Transaction "$2" "$2" '
                          '2>/dev/null; echo "exit=$?"', "sh", wal_dir, name],
                         env={"TZ": "UTC"})
        return [_utc(m.group(1)) for m in _XACT_END.finditer(out)], out.endswith("exit=0\n")

    def closed_logs(self, runner: NodeRunner) -> list[PurePosixPath]:
        # In-progress copies end in ".tmp" and do not match.
        return [ARCHIVE / n for n in sorted(runner.list_dir(ARCHIVE)) if _LOG_NAME.fullmatch(n)]

    # --- restoring ---------------------------------------------------------------

    def restore(self, ctx: NodeContext, runner: NodeRunner, backup: Iterable[bytes],
                meta: Mapping[str, str], logs: list[tuple[str, Iterable[bytes]]],
                target: str | None) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a PostgreSQL backup (format {meta.get('format')!r})")
        if meta.get("version") != ctx.version:
            raise ValueError(f"the backup is of PostgreSQL {meta.get('version')}, "
                             f"the node runs {ctx.version}")
        when = _utc(target) if target is not None else None
        if when is not None and "end_time" in meta and when < _utc(meta["end_time"]):
            raise ValueError(f"restore target {target} is before the end of the backup "
                             f"({meta['end_time']}); choose a later time or an older backup")
        _check_names([name for name, _ in logs])
        ensure_archive_dir(runner)
        if runner.exists(DATA / "PG_VERSION"):
            return  # restored already (this step ran before)
        runner.remove_tree(DATA_RESTORE)
        runner.remove_tree(RECOVERY)
        scratch = runner.abspath(DATA_RESTORE)
        runner.run(["mkdir", "-m", "0700", scratch])
        with _written_back(runner, scratch):
            runner.feed([*TAR_EXTRACT, "-C", scratch], backup)
            # Every file against the manifest, and the WAL from start to end of the backup.
            runner.run([self._bin(ctx.version, "pg_verifybackup"), "--quiet", scratch])
        _check_gaps([name for name, _ in logs], _backup_end(runner))

        runner.run(["mkdir", "-p", "-m", "0700", runner.abspath(RECOVERY_WAL)])
        for name, chunks in logs:
            runner.feed(["sh", "-c", 'cat > "$1"', "sh", runner.abspath(RECOVERY_WAL / name)],
                        chunks)
        wal = shlex.quote(runner.abspath(RECOVERY_WAL))
        settings = {
            # Quietly fails for files that are not there (PostgreSQL asks for some).
            "restore_command": f"test -f {wal}/%f && cp {wal}/%f %p",
            "recovery_target_timeline": "latest",
        }
        if when is not None and not self._ends_by(ctx, runner, [n for n, _ in logs], when):
            settings["recovery_target_time"] = when.strftime("%Y-%m-%d %H:%M:%S.%f+00")
            settings["recovery_target_action"] = "promote"
        own = {**self.settings(ctx), **archive_settings(runner)}
        for name in HOT_STANDBY_SETTINGS:
            if name in meta:
                settings[name] = str(max(int(meta[name]), int(own.get(name, 0))))
        runner.write_file(RECOVERY_CONF, "".join(
            f"{k} = {conf_value(v)}\n" for k, v in settings.items()).encode())
        runner.write_file(DATA_RESTORE / "recovery.signal", b"")
        # Hoard never uses ALTER SYSTEM: whatever the source had there does not apply.
        runner.write_file(DATA_RESTORE / "postgresql.auto.conf", b"")
        runner.rename(DATA_RESTORE, DATA)

    def _ends_by(self, ctx: NodeContext, runner: NodeRunner, names: list[str],
                 when: datetime) -> bool:
        """Whether the staged WAL holds no transaction ending after ``when``. Then
        recovery runs to the end of the WAL, which is the state at ``when`` (the
        window ends where every commit up to it is shipped); with a target time
        it would fail, having found no record past the target."""
        wal_dir = runner.abspath(RECOVERY_WAL)
        for name in sorted((n for n in names if _SEGMENT.fullmatch(n)), reverse=True):
            ends, whole = self._commit_times(ctx, runner, wal_dir, name)
            if not whole:
                return False  # unread: recovery decides, with the target set
            if ends:
                return max(ends) <= when
        return True  # no transaction ended after the backup

    def finish_restore(self, ctx: NodeContext, ca_file: str, runner: NodeRunner,
                       target: str | None) -> None:
        progress, deadline = None, time.monotonic() + RECOVERY_STALL
        down_since: float | None = None
        delay = 0.01  # a restore without logs to replay is done a moment after the start
        while True:
            now = time.monotonic()
            try:
                with self._connect(ctx, ca_file, timeout=3) as conn:
                    row = conn.execute(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                        "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END"
                    ).fetchone()
                assert row is not None
                recovering, replayed, paused = row
                detail, down_since = f"replayed up to {replayed}", None
            except psycopg.OperationalError as exc:
                recovering, replayed, paused = True, progress, False
                detail = str(exc).strip().splitlines()[0] if str(exc) else "unreachable"
                # The postmaster removes its pid file when recovery fails and it exits.
                if runner.exists(DATA / "postmaster.pid"):
                    down_since = None
                elif down_since is None:
                    down_since = now
                elif now - down_since > STOPPED_GRACE:
                    raise RuntimeError("recovery failed: " + self._recovery_failure(runner)) \
                        from None
            if not recovering:
                break
            if paused:
                raise RuntimeError("recovery paused instead of finishing; see the server log")
            if replayed != progress:
                progress, deadline = replayed, now + RECOVERY_STALL
            if now > deadline:
                raise TimeoutError(f"recovery made no progress for {RECOVERY_STALL:.0f} s "
                                   f"({detail})")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        runner.remove_tree(RECOVERY)

    def _recovery_failure(self, runner: NodeRunner) -> str:
        """Why the startup process gave up, from the server log (best effort)."""
        if not runner.exists(SERVER_LOG):
            return "the server stopped during recovery"
        tail = b""
        for chunk in runner.read_stream(SERVER_LOG):
            tail = (tail + chunk)[-65536:]
        lines = tail.decode(errors="replace").splitlines()
        exited = [m.group(1) for line in lines
                  if (m := re.search(r"startup process \(PID (\d+)\) exited", line))]
        reasons = [line.split(":  ", 1)[-1] for line in lines
                   if re.search(r"\b(FATAL|PANIC):", line)
                   and (not exited or f"[{exited[-1]}]" in line)]
        return reasons[-1] if reasons else "the server stopped during recovery"
