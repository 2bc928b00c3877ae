"""Server logs of a failed test, in its output: every test that starts servers
registers its state directory, and a failing test reports the tail of each log
under the directories still alive (``conftest.pytest_runtest_makereport``);
context managers that remove their directory print the logs first when the
test fails inside them."""

from __future__ import annotations

from pathlib import Path

TAIL_LINES = 60
# Hoard's own (serve, api, workers), each node's processes', MariaDB's state
# transfers', the proxies' and etcd's, pods'.
LOG_GLOBS = ("*.log", "nodes/*/log/*.log", "nodes/*/tmp/sst-logs/*", "endpoints/*/log/*.log",
             "etcd/log/*.log", "nodes/*/data/log/*", "nodes/*/data/*.err",
             # the stand-in kubelet's pods (tests/kubelet.py): containers' output, volumes
             "kubelet/pods/*/*.log", "kubelet/claims/*/log/*.log", "kubelet/claims/*/data/log/*")

_live: list[Path] = []


def register(state_dir: Path) -> None:
    _live.append(state_dir)


def unregister(state_dir: Path) -> None:
    if state_dir in _live:
        _live.remove(state_dir)


def logs_text(state_dirs: list[Path] | None = None) -> str:
    """The last lines of every server log under the state directories."""
    parts = []
    for state_dir in state_dirs if state_dirs is not None else list(_live):
        for pattern in LOG_GLOBS:
            for path in sorted(state_dir.glob(pattern)):
                if path.is_file() and not path.is_symlink():
                    try:
                        lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
                    except OSError as exc:
                        lines = [f"(unreadable: {exc})"]
                    parts.append(f"--- {path} ---\n" + "\n".join(lines))
    return "\n".join(parts)


def print_logs(state_dir: Path) -> None:
    """Print the logs (captured by pytest and shown with the failure)."""
    text = logs_text([state_dir])
    if text:
        print(f"=== server logs under {state_dir} ===\n{text}")
