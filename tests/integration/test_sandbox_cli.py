"""``ocislim run`` and ``ocislim trace`` on a real fixture image, through the CLI."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import run_cli
from tests.images import fixture_image
from tests.integration.sandbox_support import leftovers, new_token

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.fixture(scope="module")
def image() -> Path:
    return fixture_image("python-app")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli") / "rootfs"


@pytest.fixture
def token() -> Iterator[str]:
    value = new_token()
    yield value
    assert leftovers(value) == []


def test_run_exit_code_env_workdir_and_user(image: Path, rootfs: Path, token: str) -> None:
    script = f'test "$A" = 1 && test "$(pwd)" = /srv && id -u && exit 42 # {token}'
    result = run_cli(
        "run", str(image), "--rootfs", str(rootfs), "-q", "--env", "A=1", "--workdir", "/srv",
        "--user", "nobody", "--", "sh", "-c", script,
    )  # fmt: skip
    assert result.code == 42, result.stderr
    assert result.stdout.strip() == "65534"


def test_trace_json_shape_and_exec_probe(image: Path, rootfs: Path, token: str) -> None:
    result = run_cli(
        "trace", str(image), "--rootfs", str(rootfs), "--json", "--syscalls", "--timeout", "60",
        "--exec", f"cat /etc/os-release > /dev/null # {token}",
        "--", "python3", "-c", f"import time, sys; time.sleep(600)  # {token}",
    )  # fmt: skip
    assert result.code == 128 + 15, result.stderr  # python dies of the SIGTERM after the probe
    report = json.loads(result.stdout)
    assert {"exit_code", "files", "processes", "syscalls"} <= set(report)
    paths = {f["path"]: f["access"] for f in report["files"]}
    assert "/usr/lib/os-release" in paths
    assert set().union(*paths.values()) <= {
        "read", "write", "exec", "stat", "list", "create", "delete",
    }  # fmt: skip
    assert report["syscalls"]["execve"] >= 2
    argvs = [p["argv"][:1] for p in report["processes"]]
    assert ["python3"] in argvs and ["/bin/sh"] in argvs
    assert not any(f["path"] in ("/etc/hosts", "/etc/resolv.conf") for f in report["files"])


class _Server:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_network_none_cannot_reach_host_services_but_host_can(
    image: Path, rootfs: Path, token: str
) -> None:
    server = _Server()
    probe = (
        f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {server.port}), 5)\n"
        f"except OSError:\n raise SystemExit(3)\n# {token}"
    )
    try:
        isolated = run_cli("run", str(image), "--rootfs", str(rootfs), "-q", "--",
                           "python3", "-c", probe)  # fmt: skip
        shared = run_cli("run", str(image), "--rootfs", str(rootfs), "-q", "--network", "host",
                         "--", "python3", "-c", probe)  # fmt: skip
    finally:
        server.close()
    assert isolated.code == 3, isolated.stderr
    assert shared.code == 0, shared.stderr
    assert server.accepted == 1


def test_program_cannot_signal_host_processes(image: Path, rootfs: Path, token: str) -> None:
    result = run_cli(
        "run", str(image), "--rootfs", str(rootfs), "-q", "--",
        "sh", "-c", f"kill -0 {os.getpid()} 2>/dev/null && exit 1; exit 0 # {token}",
    )  # fmt: skip
    assert result.code == 0


def test_timeout_then_sigkill_of_everything(image: Path, rootfs: Path, token: str) -> None:
    script = f"trap '' TERM; sleep 1000 & sleep 1000; # {token}"
    result = run_cli(
        "run", str(image), "--rootfs", str(rootfs), "--timeout", "1", "--", "sh", "-c", script
    )
    assert result.code == 137
    assert "timeout" in result.stderr


def test_bad_input_is_one_line_error(image: Path, rootfs: Path) -> None:
    result = run_cli("run", str(image), "--rootfs", str(rootfs), "--user", "nosuchuser", "--",
                     "true")  # fmt: skip
    assert result.code != 0
    assert "nosuchuser" in result.error
    mount = run_cli("run", str(image), "--rootfs", str(rootfs), "--mount", "/x:rel", "--", "true")
    assert "HOST:PATH" in mount.error
