"""Secrets reach the NATS resource as dg.EnvVars: the definition's config names the variable,
Dagster resolves it where the resource is built, and no repr or config holds the value."""

from __future__ import annotations

import dagster as dg
import pytest

from td_pipeline.orchestration.resources import NatsResource
from td_pipeline.orchestration.settings_wiring import nats_resource
from td_pipeline.settings import SettingsError, read_settings, secret_variables_set

SECRET = "s3cret-never-shown"


def test_the_secret_comes_from_the_environment_through_dagster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("NATS_USER", "td")
    monkeypatch.setenv("NATS_PASSWORD", SECRET)
    assert secret_variables_set() == ("NATS_PASSWORD",)
    definition = nats_resource(secret_variables_set())

    with dg.build_resources({"nats": definition}) as resources:
        nats: NatsResource = resources.nats
    assert nats.auth().password == SECRET
    assert SECRET not in repr(nats) and SECRET not in repr(nats.auth())


def test_a_secret_dagster_resolved_wins_and_only_secrets_may_be_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_TOKEN", "from-the-environment")
    token = read_settings(secrets={"NATS_TOKEN": "from-dagster"}).nats_token
    assert token is not None and token.get_secret_value() == "from-dagster"
    with pytest.raises(SettingsError, match="NATS_URL is not a secret setting"):
        read_settings(secrets={"NATS_URL": "nats://elsewhere:4222"})


def test_no_secret_variable_set_means_no_env_var_to_resolve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NATS_PASSWORD", raising=False)
    monkeypatch.delenv("NATS_TOKEN", raising=False)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    assert secret_variables_set() == ()
    with dg.build_resources({"nats": nats_resource(())}) as resources:
        assert resources.nats.auth().password is None
