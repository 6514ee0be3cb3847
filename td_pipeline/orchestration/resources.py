"""Dagster resources: the adapters of the fleet's services, configured from the environment.

Each gRPC resource makes its client lazily, once per process (runs execute in their own
process). Tests swap in the fake twins at the bottom of td_pipeline_tests/orchestration."""

from __future__ import annotations

from typing import ClassVar

import dagster as dg
from pydantic import Field, PrivateAttr

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
from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient
from td_pipeline.infrastructure.shared_nats import shared_connections
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSE_COMPLETED,
    AGENT_RESPONSE_FAILED,
    AGENT_RESPONSES_STREAM,
    DERIVATION_REQUESTED,
    DERIVATION_STREAM,
    REQUEST_DURABLE,
    RESULT_DURABLE,
)
from td_pipeline.settings import Settings


class GrpcServiceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where a fleet service listens and how to call it."""

    PEER: ClassVar[str] = "gRPC peer"  # named in one-line errors

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
            peer=self.PEER,
        )


class PlanningResource(GrpcServiceResource):
    PEER: ClassVar[str] = "Planning"
    _client: GrpcPlanningClient | None = PrivateAttr(default=None)

    def client(self) -> PlanningPort:
        if self._client is None:
            self._client = GrpcPlanningClient(self.channel_settings())
        return self._client


class ContextResource(GrpcServiceResource):
    PEER: ClassVar[str] = "Context"
    token_budget: int = 0
    _client: GrpcContextClient | None = PrivateAttr(default=None)

    def client(self) -> ContextPort:
        if self._client is None:
            self._client = GrpcContextClient(self.channel_settings(), self.token_budget)
        return self._client


class RayExecutorResource(GrpcServiceResource):
    PEER: ClassVar[str] = "Ray Executor"
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
    batch_size: int = 50  # stories per batched run; 1: one run per story, always
    llm_max_in_flight: int = 256  # bounds the learnt LLM window (docs/architecture.md)
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
            batch_size=settings.batch_size,
            llm_max_in_flight=settings.llm_max_in_flight,
            transient_retry_seconds=settings.transient_retry_seconds,
            known_roles=list(settings.known_roles),
        )


class NatsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where derivation events come from and go to. Secrets arrive as `dg.EnvVar`s (the UI
    and run configs show the variable's name, never its value)."""

    url: str
    user: str | None = None
    password: str | None = Field(default=None, repr=False)  # never in a log line
    token: str | None = Field(default=None, repr=False)
    credentials_path: str | None = None
    nkey_seed_path: str | None = None
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    envelope: bool = False  # wrap outcome events in the fleet's envelope
    request_stream: str = DERIVATION_STREAM.name
    responses_stream: str = AGENT_RESPONSES_STREAM.name
    request_durable: str = REQUEST_DURABLE
    result_durable: str = RESULT_DURABLE

    def auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.user,
            password=self.password,
            token=self.token,
            credentials_path=self.credentials_path,
            nkey_seed_path=self.nkey_seed_path,
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
        return shared_connections.puller(self.url, self.auth())

    def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """Publish to JetStream and wait for its ack; the message id makes a repeat land once."""
        shared_connections.publisher(self.url, self.auth()).publish(subject, body, message_id)

    def publish_outcome(self, event: DerivationOutcome, correlation_id: str | None) -> None:
        message = outbound_message(event, envelope=self.envelope, correlation_id=correlation_id)
        self.publish(message.subject, message.body, message.message_id)


CONSUMER_ACK_WAIT_SECONDS = 120.0
CONSUMER_MAX_DELIVER = 10
