"""A split control plane for tests: `hoard api` and several `hoard worker`
processes on one real PostgreSQL store and one state directory, each a real
process that a test can kill -9, pause, stop and start again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, HoardServer, free_port, make_state_dir, remove_state_dir
from tests.pgserver import postgres_store


class Process:
    """One Hoard process (api or worker) with its own log."""

    def __init__(self, role: str, name: str, env: dict[str, str], state_dir: Path) -> None:
        self.role, self.name, self.env, self.state_dir = role, name, env, state_dir
        self.log = state_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hoard", self.role, "--state-dir", str(self.state_dir),
                 *args], env=self.env, stdout=log, stderr=log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one must hear the TERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ControlPlane:
    """An API process and named workers sharing a PostgreSQL store."""

    def __init__(self, state_dir: Path, env: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = Process("api", "api", env, state_dir)
        self.workers: dict[str, Process] = {}

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "hoard", "migrate", "--state-dir",
                        str(self.state_dir)], env=self.env, check=True, capture_output=True)

    def start_api(self) -> None:
        self.api = Process("api", "api", self.env, self.state_dir)
        self.api.start("--port", str(self.port))
        deadline = time.monotonic() + 30
        while True:
            assert self.api.alive(), "hoard api exited:\n" + self.api.text()[-3000:]
            try:
                httpx.get(self.url + "/v2", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, self.api.text()[-3000:]
                time.sleep(0.1)

    def start_worker(self, name: str) -> Process:
        """Start worker ``name`` and wait until it holds its lease."""
        worker = Process("worker", name, {**self.env, "HOARD_WORKER_ID": name}, self.state_dir)
        already = worker.text().count(f"worker {name} running")
        worker.start()
        self.workers[name] = worker
        deadline = time.monotonic() + 60
        while worker.text().count(f"worker {name} running") == already:
            assert worker.alive(), f"worker {name} exited:\n" + worker.text()[-3000:]
            assert time.monotonic() < deadline, worker.text()[-3000:]
            time.sleep(0.1)
        return worker

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> None:
        self.api.stop()
        for worker in self.workers.values():
            worker.stop()

    def logs(self) -> str:
        parts = [f"----- {p.name}\n{p.text()[-4000:]}" for p in (self.api, *self.workers.values())]
        return "\n".join(parts)


@contextmanager
def control_plane(workers: int = 3, extra_env: dict[str, str] | None = None
                  ) -> Iterator[ControlPlane]:
    """A migrated PostgreSQL store, one API and ``workers`` workers (w1, w2, …).
    Everything is stopped and every node destroyed afterwards."""
    with postgres_store() as url:
        state_dir = make_state_dir()
        env = {**os.environ, "HOARD_ADMIN_TOKEN": ADMIN_TOKEN, "HOARD_DATABASE_URL": url,
               "HOARD_OBSERVE_INTERVAL": "0.5", "HOARD_LEASE_SECONDS": "4",
               "HOARD_DRAIN_SECONDS": "20", **(extra_env or {})}
        plane = ControlPlane(state_dir, env)
        try:
            plane.migrate()
            plane.start_api()
            for n in range(1, workers + 1):
                plane.start_worker(f"w{n}")
            yield plane
        except BaseException:
            print(plane.logs())  # why, in the failing test's output
            raise
        finally:
            plane.stop()
            HoardServer(state_dir).destroy_all_nodes()
            remove_state_dir(state_dir)
