from __future__ import annotations

import dagster as dg
import pytest

from td_pipeline.domain.values import PlanId, StoryId
from td_pipeline.orchestration.partitions import story_of_partition, story_partition_key
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    PlanningResource,
    grpc_tls_from_environment,
    nats_from_environment,
)
from td_pipeline.sandbox.planning import PlanningStore, load_sample_stories, serve_planning


def test_planning_resource_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    store = PlanningStore()
    store.seed(load_sample_stories())
    running = serve_planning(store)
    monkeypatch.setenv("PLANNING_SERVICE_ADDRESS", running.address)

    @dg.asset
    def story_of_the_plan(planning: PlanningResource) -> str:
        assert planning.client() is planning.client()  # one client (and channel) per process
        return planning.client().get_plan(PlanId("PLAN-PAY-1")).story_id.value

    try:
        result = dg.materialize(
            [story_of_the_plan],
            resources={
                "planning": PlanningResource(
                    address=dg.EnvVar("PLANNING_SERVICE_ADDRESS"), timeout_seconds=2
                )
            },
        )
    finally:
        running.stop()

    assert result.success
    assert result.output_for_node("story_of_the_plan") == "STORY-REFUNDS"


def test_channel_settings_carry_the_explicit_timeout() -> None:
    settings = PlanningResource(address="127.0.0.1:7000", timeout_seconds=1.5).channel_settings()
    assert (settings.address, settings.timeout_seconds) == ("127.0.0.1:7000", 1.5)


def test_derivation_settings_validate_the_task_range() -> None:
    assert DerivationSettings(min_tasks=2, max_tasks=9).task_count().maximum == 9
    with pytest.raises(ValueError, match="minimum"):
        DerivationSettings(min_tasks=5, max_tasks=2).task_count()


def test_partition_keys_are_story_ids() -> None:
    assert story_partition_key(StoryId(" S-1 ")) == "S-1"
    assert story_of_partition("S-1") == StoryId("S-1")
    with pytest.raises(dg.Failure, match="comma"):
        story_of_partition("S-1,S-2")


def test_settings_read_the_fleets_variables_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_VLLM_URL", "http://old:8000")
    monkeypatch.setenv("TD_VLLM_MODEL", "old-model")
    monkeypatch.setenv("TD_CONTEXT_REQUIRED", "true")
    aliases = DerivationSettings.from_environment()
    monkeypatch.setenv("VLLM_URL", "http://vllm:8000")
    monkeypatch.setenv("VLLM_MODEL", "Qwen/Qwen3-8B")
    fleet_names = DerivationSettings.from_environment()

    assert (aliases.vllm_url, aliases.vllm_model) == ("http://old:8000", "old-model")
    assert (fleet_names.vllm_url, fleet_names.vllm_model) == ("http://vllm:8000", "Qwen/Qwen3-8B")
    assert fleet_names.context_required and fleet_names.missing_llm_settings() is None


def test_missing_vllm_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("VLLM_URL", "VLLM_MODEL", "TD_VLLM_URL", "TD_VLLM_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("VLLM_MODEL", "m")
    reason = DerivationSettings.from_environment().missing_llm_settings()
    assert reason is not None and reason.startswith("VLLM_URL not set")


def test_nats_settings_from_the_environment_keep_secrets_as_env_vars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "NATS_URL": "tls://127.0.0.1:4222",
        "NATS_USER": "td",
        "NATS_PASSWORD": "canary-password",
        "NATS_TLS_CA": "/etc/td/ca.pem",
        "TD_REQUEST_STREAM": "PLANNING_EVENTS",
        "TD_RESULT_DURABLE": "td-results",
        "TD_EVENT_ENVELOPE": "true",
        "TD_GRPC_TLS_CA": "/etc/td/grpc-ca.pem",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    nats = nats_from_environment()

    assert nats.password == dg.EnvVar("NATS_PASSWORD")  # the name, never the value
    assert "canary-password" not in repr(nats)
    assert nats.request_consumer().stream == "PLANNING_EVENTS"
    assert nats.result_consumer().durable == "td-results"
    assert nats.tls_ca_path == "/etc/td/ca.pem" and nats.envelope
    assert grpc_tls_from_environment() == {"tls_ca_path": "/etc/td/grpc-ca.pem"}
    resolved = NatsResource(url="nats://x", user="td", password="canary-password")
    assert "canary-password" not in repr(resolved.auth())
