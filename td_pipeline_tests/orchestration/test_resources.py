from __future__ import annotations

import dagster as dg
import pytest

from td_pipeline.domain.values import PlanId, StoryId
from td_pipeline.orchestration.partitions import story_of_partition, story_partition_key
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    PlanningResource,
)
from td_pipeline.orchestration.retry_schedule import retry_cron
from td_pipeline.orchestration.settings_wiring import resources_from_environment
from td_pipeline.sandbox.planning import serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories
from td_pipeline.settings import DEFAULT_RETRY_CRON, SettingsError


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


def test_missing_vllm_settings_are_named() -> None:
    reason = DerivationSettings(vllm_model="m").missing_llm_settings()
    assert reason is not None and reason.startswith("VLLM_URL not set")
    assert DerivationSettings(vllm_url="u", vllm_model="m").missing_llm_settings() is None


def resource_from_environment(key: str) -> object:
    """What a run or a sensor tick gets for `key`, built as the daemon builds it."""
    with dg.build_init_resource_context() as context:
        return resources_from_environment()[key].resource_fn(context)


def test_resources_are_built_from_the_settings_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "NATS_URL": "tls://127.0.0.1:4222",
        "NATS_USER": "td",
        "NATS_PASSWORD": "canary-password",
        "NATS_TLS_CA": "/etc/td/ca.pem",
        "TD_REQUEST_STREAM": "PLANNING_EVENTS",
        "TD_RESULT_DURABLE": "td-results",
        "TD_EVENT_ENVELOPE": "true",
        "PLANNING_SERVICE_ADDRESS": "127.0.0.1:50054",
        "TD_GRPC_TLS_CA": "/etc/td/grpc-ca.pem",
        "TD_VLLM_URL": "http://vllm:8000",  # the alias, when the fleet's name is not set
        "VLLM_MODEL": "Qwen/Qwen3-8B",
        "TD_CONTEXT_REQUIRED": "true",
        "TD_MAX_ATTEMPTS": "5",
        "TD_BATCH_SIZE": "7",
        "TD_LLM_MAX_IN_FLIGHT": "4",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VLLM_URL", raising=False)

    nats = resource_from_environment("nats")
    planning = resource_from_environment("planning")
    settings = resource_from_environment("settings")

    assert isinstance(nats, NatsResource) and isinstance(planning, PlanningResource)
    assert nats.request_consumer().stream == "PLANNING_EVENTS"
    assert nats.result_consumer().durable == "td-results"
    assert nats.tls_ca_path == "/etc/td/ca.pem" and nats.envelope
    assert "canary-password" not in repr(nats.auth())
    assert planning.channel_settings().tls_ca_path == "/etc/td/grpc-ca.pem"
    assert isinstance(settings, DerivationSettings)
    assert (settings.vllm_url, settings.vllm_model) == ("http://vllm:8000", "Qwen/Qwen3-8B")
    assert settings.context_required and settings.max_attempts == 5
    assert settings.batch_size == 7 and settings.llm_max_in_flight == 4


def test_a_bad_or_missing_value_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TD_MAX_ATTEMPTS", "three")
    with pytest.raises(SettingsError) as bad:
        resource_from_environment("settings")
    monkeypatch.delenv("TD_MAX_ATTEMPTS")
    monkeypatch.delenv("RAY_EXECUTOR_ADDRESS", raising=False)
    with pytest.raises(SettingsError) as missing:
        resource_from_environment("executor")

    assert str(bad.value).startswith("bad setting: TD_MAX_ATTEMPTS:") and "'three'" in str(
        bad.value
    )
    assert "\n" not in str(bad.value)
    assert str(missing.value) == "bad setting: RAY_EXECUTOR_ADDRESS is not set"


@pytest.mark.parametrize("variable", ["TD_BATCH_SIZE", "TD_LLM_MAX_IN_FLIGHT"])
def test_a_size_below_one_is_refused(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "0")
    with pytest.raises(SettingsError) as bad:
        resource_from_environment("settings")
    assert str(bad.value).startswith(f"bad setting: {variable}:")


@pytest.mark.parametrize(
    ("environment", "cron"),
    [
        ({"TD_RETRY_CRON": "0 3 * * *", "TD_MAX_ATTEMPTS": "three"}, "0 3 * * *"),
        ({"TD_RETRY_CRON": "every night"}, DEFAULT_RETRY_CRON),
    ],
    ids=["another setting bad", "the cron bad"],
)
def test_the_retry_cron_is_read_as_set_and_a_bad_one_falls_back(
    environment: dict[str, str], cron: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cron is read when the code location loads (Dagster needs it then; the e2e tests
    set it for their daemons, and e2e test_security loads the location with bad settings): a
    bad value of another setting leaves it as set; a bad cron gives the default."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert retry_cron() == cron
