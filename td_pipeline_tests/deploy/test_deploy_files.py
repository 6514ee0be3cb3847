"""The deployment files agree with the repository: every variable the table of
docs/configuration.md documents reaches the code server (and its runs) from a ConfigMap or a
Secret, and the instance settings (run queue, the story concurrency limit, sensor and schedule
threads, run monitoring) of the Helm values and of deploy/dagster-postgres.yaml are
dagster.yaml's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from pydantic import AliasChoices

from td_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CODE_LOCATION = "td_pipeline.orchestration.definitions"
# A variable named like this holds a password, a token, credentials or a private key (or the
# path of one): it comes from a Secret.
VARIABLE = r"`([A-Z][A-Z0-9_]*)`"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|CREDS|CREDENTIALS|API_KEY|NKEY|SEED|_KEY(_|$)")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def configuration_table(page: str) -> dict[str, bool]:
    """Variable name -> required, from the first two columns of the table under
    "## Variables". Names in parentheses (aliases) are never required."""
    section = page.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    variables: dict[str, bool] = {}
    for row in rows:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        names = re.findall(VARIABLE, cells[0])
        primary = re.findall(VARIABLE, re.sub(r"\([^)]*\)", "", cells[0]))
        for name in names:
            variables[name] = name in primary and cells[1].lower().startswith("required")
    return variables


VARIABLES = configuration_table((REPO / "docs" / "configuration.md").read_text())
VALUES = load(DEPLOY / "helm" / "values.yaml")
DAGSTER_YAML = load(REPO / "dagster.yaml")
POSTGRES_YAML = load(DEPLOY / "dagster-postgres.yaml")
MANIFESTS = {
    (document["kind"], document["metadata"]["name"]): document
    for document in yaml.safe_load_all((DEPLOY / "k8s" / "td-pipeline-env.yaml").read_text())
}


def code_server() -> dict[str, Any]:
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    return dict(deployment)


def env_sources() -> dict[str, tuple[str, dict[str, Any]]]:
    """Variable name -> ("ConfigMap" or "Secret", its key reference) in the code server's env."""
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in code_server()["env"]:
        source = entry.get("valueFrom", {})
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if field in source:
                sources[entry["name"]] = (kind, source[field])
    return sources


def test_the_configuration_table_is_read() -> None:
    table = """# Configuration

## Variables

| variable | default | meaning |
| --- | --- | --- |
| `A_URL`, `A_MODEL` (aliases `TD_A_URL`) | required to take requests | a \\| b |
| `TD_B` | `x` | c |

## Next
"""
    assert configuration_table(table) == {
        "A_URL": True,
        "A_MODEL": True,
        "TD_A_URL": False,
        "TD_B": False,
    }
    assert {"NATS_URL", "PLANNING_SERVICE_ADDRESS", "TD_MAX_ATTEMPTS"} <= set(VARIABLES)


@pytest.mark.parametrize("variable", sorted(VARIABLES))
def test_every_documented_variable_comes_from_a_configmap_or_a_secret(variable: str) -> None:
    sources = env_sources()
    assert variable in sources, f"{variable} is not in the code server's env in values.yaml"
    kind, reference = sources[variable]
    assert reference["key"] == variable
    if SECRET_NAME.search(variable):
        assert kind == "Secret", f"{variable} is a secret: take it from a Secret"
    if VARIABLES[variable]:
        assert not reference.get("optional"), f"{variable} is required"
        manifest = MANIFESTS[(kind, reference["name"])]
        assert variable in {**manifest.get("data", {}), **manifest.get("stringData", {})}
    else:
        assert reference.get("optional") is True, f"{variable} has a default: optional"
        assert (kind, reference["name"]) in MANIFESTS


def test_the_code_server_serves_the_definitions_and_its_runs_get_its_environment() -> None:
    deployment = code_server()
    assert CODE_LOCATION in deployment["dagsterApiGrpcArgs"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    secret = MANIFESTS[("Secret", VALUES["global"]["postgresqlSecretName"])]
    assert "postgresql-password" in secret["stringData"]
    assert VALUES["generatePostgresqlPasswordSecret"] is False


def rendered_by_the_chart(values: dict[str, Any]) -> dict[str, Any]:
    """The instance settings Dagster's chart writes into its dagster.yaml from these values
    (templates/configmap-instance.yaml, helpers/instance/_run-coordinator.tpl), with
    additionalInstanceConfig added at the top level."""
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert daemon["enabled"] and coordinator["enabled"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    rendered: dict[str, Any] = {
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queued["maxConcurrentRuns"],
                "dequeue_interval_seconds": queued["dequeueIntervalSeconds"],
                "tag_concurrency_limits": queued["tagConcurrencyLimits"],
            },
        },
    }
    for section in ("sensors", "schedules"):
        rendered[section] = {
            "use_threads": daemon[section]["useThreads"],
            "num_workers": daemon[section]["numWorkers"],
        }
    if daemon["runMonitoring"]["enabled"]:
        rendered["run_monitoring"] = {"enabled": True}  # its other keys are not ours
    extra = values.get("additionalInstanceConfig") or {}
    assert not set(extra) & set(rendered), "the chart would write these keys twice"
    return {**rendered, **extra}


def test_the_helm_instance_settings_are_dagster_yamls() -> None:
    rendered = rendered_by_the_chart(VALUES)
    # But for how long a run may take to start: a pod can take minutes (scheduling, image
    # pull, a node scaling up), a process on one machine seconds.
    pod, process = rendered["run_monitoring"], DAGSTER_YAML["run_monitoring"]
    assert pod["start_timeout_seconds"] > process["start_timeout_seconds"]
    timing = {"start_timeout_seconds", "poll_interval_seconds"}
    rendered["run_monitoring"] = {k: v for k, v in pod.items() if k not in timing}
    expected = {
        **DAGSTER_YAML,
        "run_monitoring": {k: v for k, v in process.items() if k not in timing},
    }
    assert {key: rendered.get(key) for key in DAGSTER_YAML} == expected


def test_the_postgres_instance_config_is_dagster_yaml_with_postgres_storage(
    tmp_path: Path,
) -> None:
    settings = {key: value for key, value in POSTGRES_YAML.items() if key != "storage"}
    assert settings == DAGSTER_YAML
    database = POSTGRES_YAML["storage"]["postgres"]["postgres_db"]
    assert all(set(value) == {"env"} for key, value in database.items() if key != "scheme")
    assert database["scheme"] == VALUES["postgresql"]["postgresqlScheme"]
    # Dagster's instance schema accepts it (variables are read, and the server reached, only
    # when the storage is opened: the e2e tests in test_postgres.py do that).
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster-postgres.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert "postgres_db" in config["storage"]["postgres"]


def test_the_image_pins_the_dagster_libraries_of_the_project() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (postgres,) = [pin for pin in dependencies if pin.startswith("dagster-postgres==")]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"DAGSTER_LIBRARIES_VERSION={postgres.split('==')[1]}" in dockerfile
    assert "dagster-k8s==${DAGSTER_LIBRARIES_VERSION}" in dockerfile


def test_serve_metrics_runs_beside_the_daemon_with_the_pipelines_settings() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "td-pipeline-metrics.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    service = next(d for d in documents if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    image = code_server()["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    assert container["command"] == ["td-pipeline", "serve-metrics"]
    # The same ConfigMap and Secret (and secret files) as the code server.
    sources = {next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert sources == {"td-pipeline-config", "td-pipeline-secrets"}
    assert all(
        ((kind, name) in MANIFESTS)
        for kind, name in (("ConfigMap", "td-pipeline-config"), ("Secret", "td-pipeline-secrets"))
    )
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["secret-files"]["secret"]["secretName"] == "td-pipeline-secret-files"
    # The instance the chart renders, where DAGSTER_HOME says.
    env = {entry["name"]: entry for entry in container["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["dagster-instance"] == f"{env['DAGSTER_HOME']['value']}/dagster.yaml"
    password = env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == VALUES["global"]["postgresqlSecretName"]
    # Reachable by Prometheus on the port it listens on; probed on /health, not /ready.
    port = int(env["TD_METRICS_PORT"]["value"])
    assert env["TD_METRICS_HOST"]["value"] == "0.0.0.0"
    assert container["ports"][0]["containerPort"] == port
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_configuration_table_lists_every_setting_and_no_other() -> None:
    """What the deployment files are checked against (docs/configuration.md's table) is what
    settings.py reads: a new setting missing from the table cannot slip past the checks above."""
    read: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        read |= set(map(str, alias.choices)) if isinstance(alias, AliasChoices) else {str(alias)}
    assert set(VARIABLES) == read
