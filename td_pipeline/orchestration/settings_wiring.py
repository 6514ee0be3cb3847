"""The settings (`td_pipeline.settings`) turned into the pipeline's resources, when a run or a
sensor tick starts rather than when the code location loads: a bad value fails that run or
tick with one line naming the variable.

Secrets (`SECRET_VARIABLES`) reach the NATS resource as `dg.EnvVar`s: its config holds
`{"env": "NATS_PASSWORD"}`, which Dagster resolves from the environment of the process that
builds the resource, so the UI, the run configs and the event log name the variable and never
hold its value. Only the variables set when the code location loads are referenced (Dagster
fails a resource whose `EnvVar` is unset); the settings still validate the value."""

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
from td_pipeline.orchestration.run_outputs import RunOutputStore
from td_pipeline.settings import (
    SECRET_VARIABLES,
    Settings,
    SettingsError,
    read_settings,
    secret_variables_set,
)


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
        nkey_seed_path=auth.nkey_seed_path,
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


def resources_from_environment() -> dict[str, dg.ResourceDefinition | RunOutputStore]:
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
        "nats": nats_resource(secret_variables_set()),
        "io_manager": RunOutputStore(),
    }


def nats_resource(secrets_set: tuple[str, ...]) -> dg.ResourceDefinition:
    """The NATS resource; the secrets in `secrets_set` come from Dagster's `dg.EnvVar`s."""

    def build(init_context: dg.InitResourceContext) -> NatsResource:
        resolved = {name: str(value) for name, value in init_context.resource_config.items()}
        return nats_from_settings(read_settings(secrets=resolved))

    definition = dg.ResourceDefinition(
        resource_fn=build,
        config_schema={
            name: dg.Field(dg.StringSource, is_required=False) for name in SECRET_VARIABLES
        },
        description="NATS JetStream (NATS_*, TD_*_STREAM, TD_*_DURABLE; secrets as EnvVars)",
    )
    # {"env": NAME} is what a dg.EnvVar is in config: resolved when the resource is built.
    return definition.configured({name: {"env": name} for name in secrets_set})
