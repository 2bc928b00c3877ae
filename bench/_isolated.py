"""Redis servers started by hand with the isolation a Hoard node has, as the
fair baseline for create throughput: what an operator would do by hand for N
tenants who must not reach each other's data.

Each server gets, all N at once (one thread each, as Hoard gets N POSTs at
once): an OS account of its own (``groupadd``/``useradd``, retried while
another holds /etc/passwd's lock), a filesystem of its own (a sparse image,
``mkfs.ext4``, a loop mount, Hoard's flags), cgroups with the ``nano`` size's
limits, an ECDSA P-256 certificate (``openssl``), and a TLS-only
``redis-server`` with a password, started as the account in the cgroups; done
when it answers PING over TLS. Nothing is recorded durably and nothing is
checked afterwards, which Hoard does: the ratio against this is the cost of
the control plane, not of isolation.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import LAUNCHER, busy_cpu, free_port, make_state_dir
from _engines import REDIS_SERVER

from hoard.providers import cgroups

UID_BASE = 299_000  # inside Hoard's default range's neighbourhood, never handed out by it
CPUS, MEMORY_MB, STORAGE_GB = 0.5, 256, 1  # size nano, Hoard's default storage for it
MOUNT = ["mount", "-o", "loop,nosuid,nodev"]


def _tool(argv: list[str]) -> None:
    for _ in range(200):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        if "lock" not in proc.stderr:
            raise RuntimeError(f"{argv[0]}: {proc.stderr.strip()}")
        time.sleep(0.05)
    raise RuntimeError(f"{argv[0]}: /etc/passwd stayed locked")


class Isolated:
    """One hand-made isolated Redis server."""

    def __init__(self, base: Path, index: int) -> None:
        self.root = base / f"r{index}"
        self.name, self.uid = f"hoard-bench-{index}", UID_BASE + index
        self.group = f"bench-iso-{index}"
        self.image = base / f"r{index}.img"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        uid = str(self.uid)
        _tool(["groupadd", "-g", uid, self.name])
        _tool(["useradd", "--system", "-u", uid, "-g", uid, "-M", "-l", "-d", "/nonexistent",
               "-s", "/usr/sbin/nologin", self.name])
        self.root.mkdir(mode=0o700)
        with open(self.image, "wb") as fh:
            fh.truncate(STORAGE_GB << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", str(self.image)], check=True)
        subprocess.run([*MOUNT, str(self.image), str(self.root)], check=True)
        procs = cgroups.apply(self.group, CPUS, MEMORY_MB).procs_files
        cert, key = self.root / "server.crt", self.root / "server.key"
        subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes",
                        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True,
                       capture_output=True)
        shutil.chown(self.root, self.uid, self.uid)
        for path in (cert, key):
            shutil.chown(path, self.uid, self.uid)
        self.port, self.password = free_port(), secrets.token_urlsafe(18)
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(self.root), "--port", "0",
                "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-auth-clients", "no",
                "--requirepass", self.password, "--save", "", "--maxmemory", "192mb"]
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "bench-launch", "setpriv", f"--reuid={uid}",
                 f"--regid={uid}", "--clear-groups", "--", *argv],
                env={"PATH": "/usr/bin:/bin", "HOARD_CGROUP_PROCS": " ".join(procs)},
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        self._wait(cert)

    def _wait(self, cert: Path) -> None:
        import redis

        deadline = time.monotonic() + 120
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                                 ssl=True, ssl_ca_certs=str(cert), socket_timeout=2) as c:
                    c.ping()
                return
            except Exception:
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.root / "server.log").read_text()[-1500:]) from None
                time.sleep(0.02)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        subprocess.run(["umount", str(self.root)], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            cgroups.remove(self.group)
        subprocess.run(["userdel", self.name], capture_output=True, check=False)
        subprocess.run(["groupdel", self.name], capture_output=True, check=False)


def isolated_redis_many(count: int) -> tuple[float, float]:
    """Seconds until ``count`` isolated servers, made all at once, answer PING,
    and the machine's CPU seconds meanwhile."""
    base = make_state_dir("hoard-bench-iso-")
    servers = [Isolated(base, i) for i in range(count)]
    failures: list[BaseException] = []
    lock = threading.Lock()

    def make(server: Isolated) -> None:
        try:
            server.start()
        except BaseException as exc:  # reported after every server is torn down
            with lock:
                failures.append(exc)

    try:
        t0, cpu0 = time.perf_counter(), busy_cpu()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(make, servers))
        took, cpu = time.perf_counter() - t0, busy_cpu() - cpu0
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(Isolated.destroy, servers))
        shutil.rmtree(base, ignore_errors=True)
    if failures:
        raise RuntimeError(f"{len(failures)} isolated servers failed: {failures[0]}")
    return took, cpu
