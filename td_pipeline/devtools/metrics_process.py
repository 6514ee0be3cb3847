"""`td-pipeline serve-metrics` as a child process, the way an operator runs it beside the
daemon: used by the demo and the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

STOP_GRACE_SECONDS = 20.0
ANNOUNCEMENT = "serving metrics on "


class MetricsProcess:
    """Starts `td-pipeline serve-metrics` with the fleet's environment and DAGSTER_HOME; `url`
    is where it serves (`<url>/metrics`, `/health`, `/ready`)."""

    def __init__(self, environment: dict[str, str], home: Path, log: Path, port: int = 0) -> None:
        self._environment = {**os.environ, **environment, "DAGSTER_HOME": str(home)}
        self._log_path = log
        self._port = port
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self.url = ""

    def start(self) -> MetricsProcess:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("a")
        self._process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("td-pipeline")),
                *("serve-metrics", "--port", str(self._port)),
            ],
            env=self._environment,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline()  # "serving metrics on http://HOST:PORT/metrics …"
        if not first.startswith(ANNOUNCEMENT):
            self.stop()
            raise RuntimeError(f"serve-metrics did not start; see {self._log_path}")
        self.url = first.removeprefix(ANNOUNCEMENT).split()[0].removesuffix("/metrics")
        return self

    def stop(self) -> int | None:
        """Stops it (SIGTERM, then SIGKILL after a grace period); its exit code."""
        code = None
        if self._process is not None:
            self._process.terminate()
            try:
                code = self._process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                code = self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


@contextlib.contextmanager
def serving_metrics(
    environment: dict[str, str], home: Path, log: Path, port: int = 0
) -> Iterator[MetricsProcess]:
    """`MetricsProcess` started for the `with` block, stopped after it."""
    server = MetricsProcess(environment, home, log, port).start()
    try:
        yield server
    finally:
        server.stop()
