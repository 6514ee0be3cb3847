"""The settings (`td_pipeline.settings`) turned into the pipeline's resources, when a run or a
sensor tick starts rather than when the code location loads: a bad value fails that run or
tick with one line naming the variable. Secrets are read from the environment there and never
reach run config, tags or the UI."""

from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from td_pipeline.infrastructure.nats_auth import nats_auth
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    NatsResource,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.settings import Settings, SettingsError, read_settings


def _required(value: str, variable: str) -> str:
    if not value.strip():
        raise SettingsError(f"bad setting: {variable} is not set")
    return value


def nats_from_settings(settings: Settings) -> NatsResource:
    auth = nats_auth(settings)
    return NatsResource(
        url=_required(settings.nats_url, "NATS_URL"),
        user=auth.user,
        password=auth.password,
        token=auth.token,
        credentials_path=auth.credentials_path,
        tls_ca_path=auth.tls_ca_path,
        tls_cert_path=auth.tls_cert_path,
        tls_key_path=auth.tls_key_path,
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
