"""Dagster resources: the adapters of the fleet's services, configured from the environment.

Each gRPC resource makes its client lazily, once per process (runs execute in their own
process). Tests swap in the fake twins at the bottom of td_pipeline_tests/orchestration."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import PrivateAttr

from td_pipeline.application.ports import ContextPort, ExecutorPort, PlanningPort
from td_pipeline.domain.events import DerivationOutcome
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.infrastructure.context_client import GrpcContextClient
from td_pipeline.infrastructure.event_mappers import outbound_message
from td_pipeline.infrastructure.executor_client import GrpcExecutorClient
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
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
    llm_timeout_seconds: int = 600
    max_attempts: int = 3

    def task_count(self) -> TaskCountRange:
        return TaskCountRange(minimum=self.min_tasks, maximum=self.max_tasks)


class NatsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The NATS connection events are published on; one loop-owned connection per process."""

    url: str
    token: str | None = None  # from dg.EnvVar; never logged
    envelope: bool = False  # wrap outcome events in the fleet's envelope
    _publisher: JetStreamPublisher | None = PrivateAttr(default=None)
    _pid: int | None = PrivateAttr(default=None)

    def publisher(self) -> JetStreamPublisher:
        if self._publisher is None or self._pid != os.getpid():
            self._publisher = JetStreamPublisher(self.url, self.token)
            self._pid = os.getpid()
        return self._publisher

    def publish_outcome(self, event: DerivationOutcome, correlation_id: str | None) -> None:
        message = outbound_message(event, envelope=self.envelope, correlation_id=correlation_id)
        self.publisher().publish(message.subject, message.body, message.message_id)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._publisher is not None and self._pid == os.getpid():
            self._publisher.close()
        self._publisher = None
