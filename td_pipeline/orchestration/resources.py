"""Dagster resources: the adapters of the fleet's services, configured from the environment.

Each gRPC resource makes its client lazily, once per process (runs execute in their own
process). Tests swap in the fake twins at the bottom of td_pipeline_tests/orchestration."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from td_pipeline.application.ports import ContextPort, ExecutorPort, PlanningPort
from td_pipeline.domain.events import DerivationOutcome
from td_pipeline.domain.roles import CANONICAL_ROLES
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.domain.values import Role
from td_pipeline.infrastructure.context_client import GrpcContextClient
from td_pipeline.infrastructure.event_mappers import outbound_message
from td_pipeline.infrastructure.executor_client import GrpcExecutorClient
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.jetstream_consumer import JetStreamPuller
from td_pipeline.infrastructure.jetstream_publisher import JetStreamPublisher
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient


class GrpcServiceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where a fleet service listens and how to call it."""

    address: str
    timeout_seconds: float = 5.0
    retry_attempts: int = 4
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None
    tls_key_path: str | None = None

    def channel_settings(self) -> ChannelSettings:
        return ChannelSettings(
            address=self.address,
            timeout_seconds=self.timeout_seconds,
            retry_attempts=self.retry_attempts,
            tls_ca_path=self.tls_ca_path,
            tls_cert_path=self.tls_cert_path,
            tls_key_path=self.tls_key_path,
        )


class PlanningResource(GrpcServiceResource):
    _client: GrpcPlanningClient | None = PrivateAttr(default=None)

    def client(self) -> PlanningPort:
        if self._client is None:
            self._client = GrpcPlanningClient(self.channel_settings())
        return self._client


class ContextResource(GrpcServiceResource):
    token_budget: int = 0
    _client: GrpcContextClient | None = PrivateAttr(default=None)

    def client(self) -> ContextPort:
        if self._client is None:
            self._client = GrpcContextClient(self.channel_settings(), self.token_budget)
        return self._client


class RayExecutorResource(GrpcServiceResource):
    _client: GrpcExecutorClient | None = PrivateAttr(default=None)

    def client(self) -> ExecutorPort:
        if self._client is None:
            self._client = GrpcExecutorClient(self.channel_settings())
        return self._client


class DerivationSettings(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How derivations are done: task-count range, prompt, LLM and its timeout."""

    min_tasks: int = 1
    max_tasks: int = 30
    prompt_template_path: str | None = None
    vllm_url: str = ""
    vllm_model: str = ""
    llm_timeout_seconds: int = 600  # the watchdog fails an attempt unanswered for this long
    max_attempts: int = 3  # per derivation, then a person has to look
    transient_retry_seconds: float = 60.0  # how long a step rides out UNAVAILABLE
    known_roles: list[str] = Field(  # a request naming another role is refused
        default_factory=lambda: sorted(role.value for role in CANONICAL_ROLES)
    )
    sensor_batch: int = 50  # messages per sensor tick
    sensor_fetch_seconds: float = 2.0  # bounded wait per tick, well under the 60 s tick timeout

    def task_count(self) -> TaskCountRange:
        return TaskCountRange(minimum=self.min_tasks, maximum=self.max_tasks)

    def known_role_set(self) -> frozenset[Role]:
        return frozenset(Role(name) for name in self.known_roles)

    @classmethod
    def from_environment(cls) -> DerivationSettings:
        """The defaults, overridden by the TD_* variables that are set (not secrets)."""
        overrides: dict[str, Any] = {
            name: kind(os.environ[variable])
            for name, (variable, kind) in SETTINGS_VARIABLES.items()
            if os.environ.get(variable)
        }
        if os.environ.get(KNOWN_ROLES_VARIABLE):
            overrides["known_roles"] = [
                name.strip() for name in os.environ[KNOWN_ROLES_VARIABLE].split(",") if name.strip()
            ]
        return cls(**overrides)


KNOWN_ROLES_VARIABLE = "TD_KNOWN_ROLES"  # comma-separated
SETTINGS_VARIABLES: dict[str, tuple[str, type[int] | type[float] | type[str]]] = {
    "min_tasks": ("TD_MIN_TASKS", int),
    "max_tasks": ("TD_MAX_TASKS", int),
    "prompt_template_path": ("TD_PROMPT_TEMPLATE", str),
    "vllm_url": ("TD_VLLM_URL", str),
    "vllm_model": ("TD_VLLM_MODEL", str),
    "llm_timeout_seconds": ("TD_LLM_TIMEOUT_SECONDS", int),
    "max_attempts": ("TD_MAX_ATTEMPTS", int),
    "transient_retry_seconds": ("TD_TRANSIENT_RETRY_SECONDS", float),
}


Connection = TypeVar("Connection", JetStreamPublisher, JetStreamPuller)


def _alive(connection: Connection | None) -> Connection | None:
    """The connection, unless it gave up reconnecting during a long outage (then closed, so
    that its loop thread stops, and replaced by the caller)."""
    if connection is not None and connection.is_closed:
        with contextlib.suppress(Exception):
            connection.close()
        return None
    return connection


class _ProcessConnections:
    """NATS connections shared by everything in one process, one per server and kind.

    Dagster may build a new resource object for every run and sensor tick; caching on the
    object would open (and leak) a connection each time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._publishers: dict[tuple[str, str | None], JetStreamPublisher] = {}
        self._pullers: dict[tuple[str, str | None], JetStreamPuller] = {}

    def _forget_after_fork(self) -> None:
        if self._pid != os.getpid():  # connections do not survive fork(): start afresh
            self._publishers, self._pullers, self._pid = {}, {}, os.getpid()

    def publisher(self, url: str, token: str | None) -> JetStreamPublisher:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._publishers.get((url, token)))
            if current is None:
                current = self._publishers[(url, token)] = JetStreamPublisher(url, token)
            return current

    def puller(self, url: str, token: str | None) -> JetStreamPuller:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._pullers.get((url, token)))
            if current is None:
                current = self._pullers[(url, token)] = JetStreamPuller(url, token)
            return current

    def close_all(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            connections: list[JetStreamPublisher | JetStreamPuller] = [
                *self._publishers.values(),
                *self._pullers.values(),
            ]
            self._publishers, self._pullers = {}, {}
        for connection in connections:
            with contextlib.suppress(Exception):  # closing at exit: the server may be gone
                connection.close()


_connections = _ProcessConnections()
# Stop reconnect loops before the interpreter goes (they would log into its last output).
atexit.register(_connections.close_all)


def close_shared_nats_connections() -> None:
    """Close this process's shared NATS connections (they reopen on next use)."""
    _connections.close_all()


class NatsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where derivation events come from and go to."""

    url: str
    token: str | None = None  # from dg.EnvVar; never logged
    envelope: bool = False  # wrap outcome events in the fleet's envelope

    def puller(self) -> JetStreamPuller:
        return _connections.puller(self.url, self.token)

    def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """Publish to JetStream and wait for its ack; the message id makes a repeat land once."""
        _connections.publisher(self.url, self.token).publish(subject, body, message_id)

    def publish_outcome(self, event: DerivationOutcome, correlation_id: str | None) -> None:
        message = outbound_message(event, envelope=self.envelope, correlation_id=correlation_id)
        self.publish(message.subject, message.body, message.message_id)
