"""The Dagster side of a local run: a DAGSTER_HOME holding the repository's `dagster.yaml`, and
the `dagster-daemon` (sensors, schedules, run queue) and `dagster-webserver` processes.

Used by the demo, the end-to-end benchmark and the end-to-end tests, so that all three run
the pipeline the way an operator does. Each process gets its own session: stopping it stops
the code server and run workers it started too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "workspace.yaml"
INSTANCE_CONFIG = REPO / "dagster.yaml"
WEBSERVER_HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 20.0


def prepare_home(home: Path, instance_config: Path = INSTANCE_CONFIG) -> Path:
    """A DAGSTER_HOME with our instance config (kept up to date with the repository's) and
    its storage created: a daemon and a webserver starting together would both try to create
    the SQLite tables, and one of them would fail."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(instance_config, home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


CODE_SERVER_HOST = "127.0.0.1"
CODE_SERVER_START_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((CODE_SERVER_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """A code server listens once it has loaded its definitions."""
    deadline = time.monotonic() + CODE_SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a code server exited; see {log}")
        with contextlib.suppress(OSError), socket.create_connection((CODE_SERVER_HOST, port), 1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no code server on port {port}; see {log}")


def _tool(name: str) -> str:
    # The console scripts installed beside this interpreter (the project's .venv).
    return str(Path(sys.executable).with_name(name))


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Anything left in the group (a run worker, the code server) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class DagsterProcesses:
    """`dagster-daemon` and, optionally, `dagster-webserver` against one DAGSTER_HOME.

    With `code_servers` (modules), each module gets a code server of its own, started here as
    a deployment runs its user code (the Helm chart's user-code deployment), and the workspace
    points the daemon at them. Otherwise the daemon starts the code servers of `workspace`
    itself, and replaces them every 60 s: a replaced server lives on until its runs end, so a
    long burst holds two of each."""

    home: Path
    environment: dict[str, str]  # the fleet's addresses, added to this process's environment
    log_dir: Path
    workspace: Path = WORKSPACE
    webserver_port: int | None = None
    code_servers: tuple[str, ...] = ()
    daemon: subprocess.Popen[bytes] | None = None
    webserver: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)
    _spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def webserver_url(self) -> str:
        return f"http://{WEBSERVER_HOST}:{self.webserver_port}"

    def _spawn(
        self, name: str, arguments: list[str], log_name: str | None = None
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{log_name or name}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            [_tool(name), *arguments],
            cwd=self.workspace.parent,
            env={**os.environ, **self.environment, "DAGSTER_HOME": str(self.home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._spawned.append(process)
        return process

    def start(self) -> DagsterProcesses:
        try:
            if self.code_servers:
                self.workspace = self._start_code_servers()
            self.start_daemon()
            if self.webserver_port is not None:
                self.webserver = self._spawn(
                    "dagster-webserver",
                    [
                        "-w",
                        str(self.workspace),
                        "-h",
                        WEBSERVER_HOST,
                        "-p",
                        str(self.webserver_port),
                    ],
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_code_servers(self) -> Path:
        entries = []
        for module in self.code_servers:
            port = _free_port()
            server = self._spawn(
                "dagster",
                ["api", "grpc", "-m", module, "-h", CODE_SERVER_HOST, "-p", str(port)],
                log_name=f"code-server-{module}",
            )
            _wait_for_port(server, port, self.log_dir / f"code-server-{module}.log")
            entries.append(
                f"  - grpc_server:\n      host: {CODE_SERVER_HOST}\n      port: {port}\n"
                f"      location_name: {module}\n"
            )
        workspace = self.log_dir / "workspace.yaml"
        workspace.write_text("load_from:\n" + "".join(entries))
        return workspace

    def start_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            raise RuntimeError("the daemon is already running")
        self.daemon = self._spawn("dagster-daemon", ["run", "-w", str(self.workspace)])

    def kill_daemon(self) -> None:
        """SIGKILL the daemon alone, as a crash would (its children are left to notice)."""
        if self.daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                self.daemon.kill()
            self.daemon.wait()

    def wait_for_webserver(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.webserver is not None and self.webserver.poll() is not None:
                raise RuntimeError(
                    f"dagster-webserver exited; see {self.log_dir / 'dagster-webserver.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.webserver_url}/server_info", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"dagster-webserver did not answer on {self.webserver_url}")

    def stop(self) -> None:
        # Every group ever started, killed daemons' included: their run workers may live on.
        for process in reversed(self._spawned):
            _stop_group(process, STOP_GRACE_SECONDS)
        self._spawned.clear()
        self.webserver = self.daemon = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> DagsterProcesses:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
