"""Dagster resources: the adapters of the fleet's services, configured from the environment.

Each gRPC resource makes its client lazily, once per process (runs execute in their own
process). Tests swap in the fake twins at the bottom of td_pipeline_tests/orchestration."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr, SecretStr

from td_pipeline.application.ports import ContextPort, ExecutorPort, PlanningPort
from td_pipeline.domain.events import DerivationOutcome
from td_pipeline.domain.roles import CANONICAL_ROLES, role_from_text
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.domain.values import Role
from td_pipeline.infrastructure.context_client import GrpcContextClient
from td_pipeline.infrastructure.event_mappers import outbound_message
from td_pipeline.infrastructure.executor_client import GrpcExecutorClient
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.jetstream_consumer import ConsumerSpec, JetStreamPuller
from td_pipeline.infrastructure.jetstream_publisher import JetStreamPublisher
from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSE_COMPLETED,
    AGENT_RESPONSE_FAILED,
    AGENT_RESPONSES_STREAM,
    DERIVATION_REQUESTED,
    DERIVATION_STREAM,
)
from td_pipeline.settings import Settings, SettingsError, read_settings


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
    vllm_url: str = ""  # VLLM_URL: the executor refuses a submission without it
    vllm_model: str = ""  # VLLM_MODEL
    context_required: bool = False  # fail the attempt when a role's context cannot be had
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
        return frozenset(role_from_text(name) for name in self.known_roles)

    def missing_llm_settings(self) -> str | None:
        """Why no submission could be accepted by the executor, or None."""
        missing = [
            name
            for name, value in (("VLLM_URL", self.vllm_url), ("VLLM_MODEL", self.vllm_model))
            if not value.strip()
        ]
        if not missing:
            return None
        return (
            f"{' and '.join(missing)} not set: the executor refuses submissions without them; "
            "requests wait in the stream until they are set"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> DerivationSettings:
        return cls(
            min_tasks=settings.min_tasks,
            max_tasks=settings.max_tasks,
            prompt_template_path=settings.prompt_template_path,
            vllm_url=settings.vllm_url,
            vllm_model=settings.vllm_model,
            context_required=settings.context_required,
            llm_timeout_seconds=settings.llm_timeout_seconds,
            max_attempts=settings.max_attempts,
            transient_retry_seconds=settings.transient_retry_seconds,
            known_roles=list(settings.known_roles),
        )


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
        self._publishers: dict[tuple[str, NatsAuth], JetStreamPublisher] = {}
        self._pullers: dict[tuple[str, NatsAuth], JetStreamPuller] = {}

    def _forget_after_fork(self) -> None:
        if self._pid != os.getpid():  # connections do not survive fork(): start afresh
            self._publishers, self._pullers, self._pid = {}, {}, os.getpid()

    def publisher(self, url: str, auth: NatsAuth) -> JetStreamPublisher:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._publishers.get((url, auth)))
            if current is None:
                current = self._publishers[(url, auth)] = JetStreamPublisher(url, auth)
            return current

    def puller(self, url: str, auth: NatsAuth) -> JetStreamPuller:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._pullers.get((url, auth)))
            if current is None:
                current = self._pullers[(url, auth)] = JetStreamPuller(url, auth)
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
    """Where derivation events come from and go to. Secrets arrive as `dg.EnvVar`s (the UI
    and run configs show the variable's name, never its value)."""

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_path: str | None = None
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    envelope: bool = False  # wrap outcome events in the fleet's envelope
    request_stream: str = DERIVATION_STREAM.name
    responses_stream: str = AGENT_RESPONSES_STREAM.name
    request_durable: str = "task-derivation-request-consumer"
    result_durable: str = "task-derivation-result-consumer"

    def auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.user,
            password=self.password,
            token=self.token,
            credentials_path=self.credentials_path,
            tls_ca_path=self.tls_ca_path,
            tls_cert_path=self.tls_cert_path,
            tls_key_path=self.tls_key_path,
        )

    def request_consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            stream=self.request_stream,
            durable=self.request_durable,
            filter_subjects=(DERIVATION_REQUESTED,),
            ack_wait_seconds=CONSUMER_ACK_WAIT_SECONDS,
            max_deliver=CONSUMER_MAX_DELIVER,
        )

    def result_consumer(self) -> ConsumerSpec:
        # One durable for answers and failures: both are handled by the same sensor.
        return ConsumerSpec(
            stream=self.responses_stream,
            durable=self.result_durable,
            filter_subjects=(AGENT_RESPONSE_COMPLETED, AGENT_RESPONSE_FAILED),
            ack_wait_seconds=CONSUMER_ACK_WAIT_SECONDS,
            max_deliver=CONSUMER_MAX_DELIVER,
        )

    def puller(self) -> JetStreamPuller:
        return _connections.puller(self.url, self.auth())

    def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """Publish to JetStream and wait for its ack; the message id makes a repeat land once."""
        _connections.publisher(self.url, self.auth()).publish(subject, body, message_id)

    def publish_outcome(self, event: DerivationOutcome, correlation_id: str | None) -> None:
        message = outbound_message(event, envelope=self.envelope, correlation_id=correlation_id)
        self.publish(message.subject, message.body, message.message_id)


CONSUMER_ACK_WAIT_SECONDS = 120.0
CONSUMER_MAX_DELIVER = 10


def _required(value: str, variable: str) -> str:
    if not value.strip():
        raise SettingsError(f"bad setting: {variable} is not set")
    return value


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def nats_from_settings(settings: Settings) -> NatsResource:
    return NatsResource(
        url=_required(settings.nats_url, "NATS_URL"),
        user=settings.nats_user,
        password=_secret(settings.nats_password),
        token=_secret(settings.nats_token),
        credentials_path=settings.nats_credentials_path,
        tls_ca_path=settings.nats_tls_ca_path,
        tls_cert_path=settings.nats_tls_cert_path,
        tls_key_path=settings.nats_tls_key_path,
        envelope=settings.event_envelope,
        request_stream=settings.request_stream,
        responses_stream=settings.responses_stream,
        request_durable=settings.request_durable,
        result_durable=settings.result_durable,
    )


GrpcResource = TypeVar("GrpcResource", PlanningResource, ContextResource, RayExecutorResource)


def grpc_from_settings(
    kind: type[GrpcResource], address: str, variable: str, settings: Settings
) -> GrpcResource:
    return kind(
        address=_required(address, variable),
        tls_ca_path=settings.grpc_tls_ca_path,
        tls_cert_path=settings.grpc_tls_cert_path,
        tls_key_path=settings.grpc_tls_key_path,
    )


def resources_from_environment() -> dict[str, dg.ResourceDefinition]:
    """The pipeline's resources, built from the settings when a run or a sensor tick starts
    (not when the code location loads): a bad value fails that run or tick with one line
    naming the variable. Secrets are read from the environment there and never reach run
    config, tags or the UI."""

    def built(make: Callable[[Settings], Any], description: str) -> dg.ResourceDefinition:
        return dg.ResourceDefinition(
            resource_fn=lambda _: make(read_settings()), description=description
        )

    return {
        "planning": built(
            lambda s: grpc_from_settings(
                PlanningResource, s.planning_address, "PLANNING_SERVICE_ADDRESS", s
            ),
            "Planning (PLANNING_SERVICE_ADDRESS, TD_GRPC_TLS_*)",
        ),
        "context_service": built(
            lambda s: grpc_from_settings(
                ContextResource, s.context_address, "CONTEXT_SERVICE_ADDRESS", s
            ),
            "Context (CONTEXT_SERVICE_ADDRESS, TD_GRPC_TLS_*)",
        ),
        "executor": built(
            lambda s: grpc_from_settings(
                RayExecutorResource, s.executor_address, "RAY_EXECUTOR_ADDRESS", s
            ),
            "The Ray Executor (RAY_EXECUTOR_ADDRESS, TD_GRPC_TLS_*)",
        ),
        "settings": built(DerivationSettings.from_settings, "How derivations are done (TD_*)"),
        "nats": built(nats_from_settings, "NATS JetStream (NATS_*, TD_*_STREAM, TD_*_DURABLE)"),
    }
