"""Helpers shared by the benchmarks: a Hoard subprocess, a hand-run PostgreSQL
server, and statistics. Everything listens on 127.0.0.1 on ports the kernel
picks, lives under a fresh /tmp directory, and is stopped by its owner."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN_TOKEN = "hoard_bench_admin_token"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_USER = "hoard-db"  # the account hand-run servers use (Hoard's nodes each have their own)
LAUNCHER = 'for p in $HOARD_CGROUP_PROCS; do echo $$ > "$p" || exit 97; done; exec "$@"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_state_dir(prefix: str) -> Path:
    """A /tmp directory the database OS user can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def load_note() -> str:
    """Revision, CPU count and load average, so a busy machine shows in the results."""
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()
    one, five, _ = os.getloadavg()
    return (f"{time.strftime('%H:%M:%S')} hoard {rev or 'unknown'}, {os.cpu_count()} CPUs, "
            f"load average {one:.2f} (1 min) {five:.2f} (5 min)")


def busy_cpu() -> float:
    """Seconds of CPU the whole machine has spent so far, every process and the
    kernel (/proc/stat, less idle and I/O wait): the difference over a run is
    what the run cost, whichever process spent it."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return float(statistics.quantiles(values, n=20, method="inclusive")[18])


class Hoard:
    """``hoard serve`` as a subprocess on a free port."""

    def __init__(self, state_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HOARD_ADMIN_TOKEN": ADMIN_TOKEN, **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "serve.log"

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hoard", "serve", "--port", str(self.port),
                 "--state-dir", str(self.state_dir)],
                env=self.env, stdout=log, stderr=log, cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hoard serve exited:\n" + self.log.read_text()[-3000:])
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/v2", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("hoard serve did not come up:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120,
                            limits=httpx.Limits(keepalive_expiry=2.0),
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def wait_operation(client: httpx.Client, op_id: str, poll: float = 0.02,
                   timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v2/operations/{op_id}").json()
        if op["status"] != "running":
            if op["status"] != "succeeded":
                raise RuntimeError(f"operation {op_id} {op['status']}: {op.get('error')}")
            return dict(op)
        time.sleep(poll)
    raise TimeoutError(f"operation {op_id} still running after {timeout}s")


def create_cluster(client: httpx.Client, name: str, size: str,
                   engine: str = "postgresql") -> str:
    """Create a cluster (PostgreSQL unless ``engine`` says otherwise), wait for it,
    return its id."""
    response = client.post("/v2/clusters", json={"name": name, "engine": engine,
                                                 "size": size})
    response.raise_for_status()
    wait_operation(client, response.json()["operation"]["id"])
    return str(response.json()["cluster"]["id"])


def delete_cluster(client: httpx.Client, cluster_id: str) -> None:
    response = client.delete(f"/v2/clusters/{cluster_id}")
    response.raise_for_status()
    wait_operation(client, response.json()["operation"]["id"])


CA_PARAMS = {"postgresql": "sslrootcert", "mysql": "ssl_ca", "rediss": "ssl_ca_certs"}


def tenant_uri(client: httpx.Client, cluster_id: str) -> str:
    """The cluster's credentials URI as a tenant uses it: plus Hoard's CA, fetched
    from the API into a file, under the client library's query parameter."""
    answer = client.get(f"/v2/clusters/{cluster_id}/credentials")
    answer.raise_for_status()
    uri = str(answer.json()["uri"])
    pem = client.get("/v2/ca.pem").content
    ca = Path(tempfile.gettempdir()) / f"hoard-ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
    if not ca.exists():
        ca.write_bytes(pem)
    param = CA_PARAMS[uri.partition("://")[0]]
    return f"{uri}{'&' if '?' in uri else '?'}{param}={quote(str(ca))}"


def teardown(hoard: Hoard | None, state_dir: Path, api_delete: bool = True) -> None:
    """Delete clusters through the API, stop it, destroy leftover nodes, remove the dir."""
    try:
        if hoard is not None and api_delete and hoard.proc and hoard.proc.poll() is None:
            with hoard.client() as client:
                for _ in range(100):  # bounded: one page of up to 1000 per round
                    page = client.get("/v2/clusters", params={"limit": 1000}).json()
                    ids = [c["id"] for c in page.get("clusters", [])
                           if c["status"] not in ("BUILDING", "DELETING")]
                    if not ids:
                        break
                    for cluster_id in ids:
                        with contextlib.suppress(Exception):
                            delete_cluster(client, cluster_id)
    finally:
        if hoard is not None:
            hoard.stop()
        if (state_dir / "nodes").exists():
            from hoard.providers.local import LocalProvider
            from tests.conftest import clear_provider

            clear_provider(LocalProvider(state_dir / "nodes", DB_USER))
        shutil.rmtree(state_dir, ignore_errors=True)


def db_user(name: str = DB_USER) -> pwd.struct_passwd:
    """An OS account hand-run servers run as: ``DB_USER`` (made here if missing),
    or a Hoard node's own when a tool works on that node's files."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", DB_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(DB_USER)


def as_db_user(argv: list[str], user: str = DB_USER) -> list[str]:
    entry = db_user(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", *argv]


def owned_dir(path: Path, user: str = DB_USER) -> Path:
    """Create ``path`` (mode 0700) owned by the OS account ``user``."""
    entry = db_user(user)
    path.mkdir(mode=0o700)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def run_as_db_user(argv: list[str], cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(as_db_user(argv), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip()[-2000:]}")


class ForegroundServer:
    """``postgres -D data`` in its own session as the database OS user, optionally
    inside cgroups (joined by a /bin/sh launcher before exec, as Hoard does)."""

    def __init__(self, data: Path, procs_files: list[str] | None = None) -> None:
        self.data = data
        self.procs_files = procs_files or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOARD_CGROUP_PROCS": " ".join(self.procs_files)}
        with open(self.data.parent / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", LAUNCHER, "bench-launch",
                 *as_db_user([str(PG_BIN / "postgres"), "-D", str(self.data)])],
                cwd=self.data.parent, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_connectable(conninfo: str, proc: subprocess.Popen[bytes] | None = None,
                     timeout: float = 120) -> None:
    """Connect until it works; fail early if the server process exited."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise
            time.sleep(0.05)
