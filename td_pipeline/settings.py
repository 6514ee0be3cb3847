"""Every setting a user can set, read and validated in one place (the table of
docs/configuration.md lists the same variables).

Read when resources are built (a run, a sensor tick, a CLI command), never at import: a bad
value then fails that tick or command with one line naming the variable, and the code
location still loads. Nothing here imports Dagster, NATS or gRPC."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from td_pipeline.domain.roles import CANONICAL_ROLES
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSES_STREAM,
    DERIVATION_STREAM,
    REQUEST_DURABLE,
    RESULT_DURABLE,
)

DEFAULT_RETRY_CRON = "*/15 * * * *"
# The settings that are secrets. Dagster resolves them from the environment as `dg.EnvVar`s
# (orchestration/settings_wiring.py): the UI shows the variable's name, run configs nothing.
SECRET_VARIABLES = ("NATS_PASSWORD", "NATS_TOKEN")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class RetryCronSetting(BaseSettings):
    """The retry schedule's cron, which Dagster needs when the code location loads: readable on
    its own, so that a bad value of another setting does not set it back to the default."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    retry_cron: str = Field(
        DEFAULT_RETRY_CRON, validation_alias=AliasChoices("TD_RETRY_CRON", "TD_BACKFILL_CRON")
    )

    @field_validator("retry_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields")
        return " ".join(fields)


class Settings(RetryCronSetting):
    """Every setting, the retry cron included."""

    # Where the fleet is. Required to run the pipeline; commands that need one say so.
    nats_url: str = Field("", validation_alias="NATS_URL")
    planning_address: str = Field("", validation_alias="PLANNING_SERVICE_ADDRESS")
    context_address: str = Field("", validation_alias="CONTEXT_SERVICE_ADDRESS")
    executor_address: str = Field("", validation_alias="RAY_EXECUTOR_ADDRESS")

    # The LLM the executor is told to use (the fleet's names first, ours as aliases).
    vllm_url: str = Field("", validation_alias=AliasChoices("VLLM_URL", "TD_VLLM_URL"))
    vllm_model: str = Field("", validation_alias=AliasChoices("VLLM_MODEL", "TD_VLLM_MODEL"))

    # NATS identity and privacy. Secrets stay SecretStr: never printed.
    nats_user: str | None = Field(None, validation_alias="NATS_USER")
    nats_password: SecretStr | None = Field(None, validation_alias="NATS_PASSWORD")
    nats_token: SecretStr | None = Field(None, validation_alias="NATS_TOKEN")
    nats_credentials_path: str | None = Field(None, validation_alias="NATS_CREDS")
    nats_nkey_seed_path: str | None = Field(None, validation_alias="NATS_NKEY_SEED")
    nats_tls_ca_path: str | None = Field(None, validation_alias="NATS_TLS_CA")
    nats_tls_cert_path: str | None = Field(None, validation_alias="NATS_TLS_CERT")
    nats_tls_key_path: str | None = Field(None, validation_alias="NATS_TLS_KEY")
    request_stream: str = Field(DERIVATION_STREAM.name, validation_alias="TD_REQUEST_STREAM")
    request_durable: str = Field(REQUEST_DURABLE, validation_alias="TD_REQUEST_DURABLE")
    responses_stream: str = Field(
        AGENT_RESPONSES_STREAM.name, validation_alias="TD_RESPONSES_STREAM"
    )
    result_durable: str = Field(RESULT_DURABLE, validation_alias="TD_RESULT_DURABLE")
    event_envelope: bool = Field(False, validation_alias="TD_EVENT_ENVELOPE")

    # gRPC TLS (CA) or mTLS (CA, client certificate and key) to the three services.
    grpc_tls_ca_path: str | None = Field(None, validation_alias="TD_GRPC_TLS_CA")
    grpc_tls_cert_path: str | None = Field(None, validation_alias="TD_GRPC_TLS_CERT")
    grpc_tls_key_path: str | None = Field(None, validation_alias="TD_GRPC_TLS_KEY")

    # How derivations are done.
    min_tasks: int = Field(1, ge=1, validation_alias="TD_MIN_TASKS")
    max_tasks: int = Field(30, ge=1, validation_alias="TD_MAX_TASKS")
    prompt_template_path: str | None = Field(None, validation_alias="TD_PROMPT_TEMPLATE")
    context_required: bool = Field(False, validation_alias="TD_CONTEXT_REQUIRED")
    llm_timeout_seconds: int = Field(600, ge=1, validation_alias="TD_LLM_TIMEOUT_SECONDS")
    max_attempts: int = Field(3, ge=1, validation_alias="TD_MAX_ATTEMPTS")
    batch_size: int = Field(50, ge=1, le=500, validation_alias="TD_BATCH_SIZE")
    llm_max_in_flight: int = Field(256, ge=1, validation_alias="TD_LLM_MAX_IN_FLIGHT")
    transient_retry_seconds: float = Field(
        60.0, ge=0, validation_alias="TD_TRANSIENT_RETRY_SECONDS"
    )
    known_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        tuple(sorted(role.value for role in CANONICAL_ROLES)), validation_alias="TD_KNOWN_ROLES"
    )

    # Where a run's steps keep their outputs, which a step re-run loads as its inputs: files
    # under DAGSTER_HOME by default (one host); an S3 bucket, or an S3-compatible store at
    # TD_IO_S3_ENDPOINT_URL, for runs on several hosts (credentials: boto3's usual AWS_*).
    io_s3_bucket: str = Field("", validation_alias="TD_IO_S3_BUCKET")
    io_s3_prefix: str = Field("td-pipeline", validation_alias="TD_IO_S3_PREFIX")
    io_s3_endpoint_url: str = Field("", validation_alias="TD_IO_S3_ENDPOINT_URL")

    # `td-pipeline serve-metrics`: where it listens (loopback unless told), and how old the
    # Dagster daemon's heartbeats may be while /ready still answers 200.
    metrics_host: str = Field("127.0.0.1", validation_alias="TD_METRICS_HOST")
    metrics_port: int = Field(9108, ge=1, le=65535, validation_alias="TD_METRICS_PORT")
    daemon_heartbeat_tolerance_seconds: float = Field(
        120.0, gt=0, validation_alias="TD_DAEMON_HEARTBEAT_TOLERANCE_SECONDS"
    )

    @field_validator("known_roles", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            names = tuple(name.strip() for name in value.split(",") if name.strip())
            if not names:
                raise ValueError("names no role")
            return names
        return value


def _one_line(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        variable = ".".join(str(part) for part in detail["loc"]) or "settings"
        given = detail.get("input")
        secret = "PASSWORD" in variable or "TOKEN" in variable
        shown = "" if secret or given is None or isinstance(given, dict) else f" (got {given!r})"
        problems.append(f"{variable}: {detail['msg']}{shown}")
    return "; ".join(problems)


def secret_variables_set() -> tuple[str, ...]:
    """Which of the secret variables are set (not empty); their values are not read here."""
    return tuple(name for name in SECRET_VARIABLES if os.environ.get(name))


def read_retry_cron() -> str:
    """TD_RETRY_CRON alone; SettingsError names it when it is wrong."""
    try:
        return RetryCronSetting().retry_cron  # type: ignore[call-arg]  # from the environment
    except ValidationError as error:
        raise SettingsError(f"bad setting: {_one_line(error)}") from None


def read_settings(secrets: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment, the `secrets` (variable -> value, as Dagster
    resolved them) taking precedence; SettingsError names each variable that is wrong."""
    unknown = sorted(set(secrets or {}) - set(SECRET_VARIABLES))
    if unknown:
        raise SettingsError(f"bad setting: {', '.join(unknown)} is not a secret setting")
    try:
        # The rest from the environment; the aliases (variable names) are the keywords.
        settings = Settings(**(secrets or {}))  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(f"bad setting: {_one_line(error)}") from None
    if settings.min_tasks > settings.max_tasks:
        raise SettingsError(
            f"bad setting: TD_MIN_TASKS ({settings.min_tasks}) is above TD_MAX_TASKS "
            f"({settings.max_tasks})"
        )
    return settings
