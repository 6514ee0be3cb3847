"""The whole local fleet in one object: NATS with the fleet's streams, Planning, Context and
the Ray Executor stand-in, all on loopback. Used by `td-pipeline sandbox up`, the demo and the
end-to-end tests."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from td_pipeline.sandbox.context import serve_context
from td_pipeline.sandbox.executor import RunningExecutor, serve_executor
from td_pipeline.sandbox.grpc_server import RunningServer
from td_pipeline.sandbox.llm import LlmBackend
from td_pipeline.sandbox.llm_capacity import LlmCapacity
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline.sandbox.offline_planner import OfflinePlanner
from td_pipeline.sandbox.planning import PlanningFaults, serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore, SampleStory, load_sample_stories
from td_pipeline.sandbox.secure_fleet import FleetSecurity, Login, make_fleet_security
from td_pipeline.sandbox.state_dir import (
    ENV_FILE_NAME,
    FLEET_ENV_FILE_NAME,
    STORE_FILE_NAME,
    write_private,
)


@dataclass
class LocalFleet:
    state_dir: Path
    backend: LlmBackend = field(default_factory=OfflinePlanner)
    # How the executor's LLM behaves under load (`sandbox.llm_capacity`); None: answers at once.
    llm_capacity: LlmCapacity | None = None
    faults: PlanningFaults = field(default_factory=PlanningFaults)
    stories: tuple[SampleStory, ...] = field(default_factory=load_sample_stories)
    nats: NatsServer | None = None
    store: PlanningStore | None = None
    planning: RunningServer | None = None
    context: RunningServer | None = None
    executor: RunningExecutor | None = None
    # Secure mode: TLS and logins on NATS, mTLS on gRPC (`sandbox.secure_fleet`).
    secure: bool = False
    login: Login = Login.PASSWORD
    pipeline_secret: str | None = None  # td-pipeline's NATS password or token; else random
    security: FleetSecurity | None = None

    def start(self) -> LocalFleet:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            tls = None
            if self.secure:
                self.security = make_fleet_security(
                    self.state_dir / "tls", self.login, self.pipeline_secret
                )
                tls = self.security.server_tls()
            self.nats = self._nats_server().start()
            self.store = PlanningStore(self.state_dir / STORE_FILE_NAME)
            self.store.seed(self.stories)
            self.planning = serve_planning(self.store, self.faults, tls=tls)
            self.context = serve_context(self.store, tls=tls)
            self.executor = serve_executor(
                self.nats.url,
                self.backend,
                tls=tls,
                nats_auth=self.nats.admin,
                capacity=self.llm_capacity,
            )
        except BaseException:
            self.stop()
            raise
        write_private(self.state_dir / ENV_FILE_NAME, self.env_lines())
        if self.security is not None:
            write_private(self.state_dir / FLEET_ENV_FILE_NAME, self.env_lines(fleet=True))
        return self

    def _nats_server(self) -> NatsServer:
        if self.security is None:
            return NatsServer(self.state_dir / "nats")
        return NatsServer(
            self.state_dir / "nats",
            security=self.security.nats_security(),
            admin=self.security.fleet_auth(),
        )

    def environment(self) -> dict[str, str]:
        if not (self.nats and self.planning and self.context and self.executor):
            raise RuntimeError("the fleet is not running")
        return {
            "NATS_URL": self.nats.url,
            "PLANNING_SERVICE_ADDRESS": self.planning.address,
            "CONTEXT_SERVICE_ADDRESS": self.context.address,
            "RAY_EXECUTOR_ADDRESS": self.executor.address,
            # What the executor is told to call: the stand-in's own LLM, or a real endpoint.
            "VLLM_URL": self.backend.vllm_url,
            "VLLM_MODEL": self.backend.vllm_model,
            **(self.security.pipeline_environment() if self.security else {}),
        }

    def fleet_environment(self) -> dict[str, str]:
        """The environment with the fleet's own NATS identity (what Planning would publish
        requests as); the same as `environment()` when the fleet is not secure."""
        extra = self.security.fleet_environment() if self.security else {}
        return {**self.environment(), **extra}

    def env_lines(self, fleet: bool = False, hide_secrets: bool = False) -> list[str]:
        # Quoted for the shell: docs/commands.md sources the file (`set -a; . sandbox.env`).
        variables = self.fleet_environment() if fleet else self.environment()
        return [
            f"{name}=" + ("<in the env file>" if hide_secrets else shlex.quote(value))
            if name.endswith(("_PASSWORD", "_TOKEN"))
            else f"{name}={shlex.quote(value)}"
            for name, value in variables.items()
        ]

    def stop(self) -> None:
        for server in (self.executor, self.context, self.planning):
            if server is not None:
                server.stop()
        self.executor = self.context = self.planning = None
        if self.nats is not None:
            self.nats.stop()
            self.nats = None
        (self.state_dir / ENV_FILE_NAME).unlink(missing_ok=True)
        (self.state_dir / FLEET_ENV_FILE_NAME).unlink(missing_ok=True)

    def __enter__(self) -> LocalFleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
