"""The pipeline on PostgreSQL storage (`deploy/dagster-postgres.yaml`): the end-to-end flow, the
daemon killed with SIGKILL between a request and its run (the sensors' ack-after-the-run
protocol and run-key dedup), and failures retried by the schedule. Each is the SQLite test's
own body, run with the same fleet and settings against a database of its own, created for the
test and dropped after it; on top, the runs are checked to be in that database and never two
at once for a story (the tag concurrency limit).

Needs PostgreSQL on 127.0.0.1:5432 letting the user `postgres` in without a password (trust),
as machines of this project's kind have. Without it these tests skip and say so; under
CI=true they fail instead, with one line."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from psycopg2 import sql

from td_pipeline.devtools.dagster_processes import REPO, DagsterProcesses, prepare_home
from td_pipeline.orchestration.attempts import run_attempts
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline_tests.e2e import test_daemon as daemon
from td_pipeline_tests.e2e import test_failures as failures

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(165)]

INSTANCE_CONFIG = REPO / "deploy" / "dagster-postgres.yaml"
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One SQLite end-to-end test as it runs here: its fleet, its settings, its body."""

    name: str  # the test id
    fleet: Callable[[Path], LocalFleet]
    settings: Mapping[str, str]
    body: Callable[[LocalFleet, DagsterProcesses], None]


def default_fleet(tmp_path: Path) -> LocalFleet:
    return LocalFleet(tmp_path / "fleet")


SCENARIOS = [
    Scenario(
        "flow",
        default_fleet,
        {},
        daemon.test_requests_become_tasks_in_planning_and_one_event_each,
    ),
    Scenario(
        "daemon-sigkill",
        default_fleet,
        {},
        daemon.test_the_daemon_killed_between_request_and_run_loses_and_duplicates_nothing,
    ),
    Scenario(
        "retry-schedule",
        failures.replay_fleet,
        failures.SETTINGS,
        failures.test_outages_lost_jobs_and_llm_failures_end_in_one_outcome_each,
    ),
]


def admin_connection() -> psycopg2.extensions.connection:
    """A connection to the server's `postgres` database; skips (fails under CI=true) when the
    server cannot be reached."""
    try:
        connection = psycopg2.connect(dbname="postgres", connect_timeout=5, **SERVER)
    except psycopg2.OperationalError as error:
        cause = str(error).strip().splitlines()[0]
        where = f"PostgreSQL on {SERVER['host']}:{SERVER['port']} (user {SERVER['user']})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{where} is required under CI=true: {cause}", pytrace=False)
        pytest.skip(
            f"{where} not reachable ({cause}). To run the PostgreSQL end-to-end tests, start "
            "one there that trusts loopback connections (apt install postgresql; pg_hba.conf: "
            "'host all postgres 127.0.0.1/32 trust')"
        )
    connection.autocommit = True
    return connection


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh database, and the DAGSTER_PG_* variables naming it (set in this process too,
    for the instance the test opens and the CLI it runs)."""
    admin = admin_connection()
    database = f"td_e2e_{secrets.token_hex(6)}"
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    environment = {
        "DAGSTER_PG_HOST": str(SERVER["host"]),
        "DAGSTER_PG_PORT": str(SERVER["port"]),
        "DAGSTER_PG_USERNAME": str(SERVER["user"]),
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        yield environment
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
        admin.close()


@pytest.fixture
def fleet(scenario: Scenario, tmp_path: Path) -> Iterator[LocalFleet]:
    with scenario.fleet(tmp_path) as fleet:
        yield fleet


@pytest.fixture
def dagster(
    scenario: Scenario, fleet: LocalFleet, postgres: dict[str, str], tmp_path: Path
) -> Iterator[DagsterProcesses]:
    home = prepare_home(tmp_path / "dagster_home", instance_config=INSTANCE_CONFIG)
    environment = {**fleet.environment(), **postgres, **scenario.settings}
    with DagsterProcesses(home, environment, tmp_path / "logs") as processes:
        yield processes


def assert_runs_stored_in(database: str) -> None:
    with psycopg2.connect(dbname=database, **SERVER) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        row = cursor.fetchone()
    connection.close()
    assert row is not None and row[0] > 0, f"no run in the database {database}"


def assert_one_run_per_story_at_a_time(instance: dg.DagsterInstance) -> None:
    """The tag concurrency limit held, and batching kept to it: a story was never in two runs
    of the same phase at once, its own or batched. (A derive batch may still be serving other
    stories when the persist run of a story it submitted starts.)"""
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for record in instance.get_run_records():
        if record.start_time is None or record.end_time is None:
            continue
        for attempt in run_attempts(record.dagster_run):
            key = (attempt.story, attempt.phase.value)
            spans.setdefault(key, []).append((record.start_time, record.end_time))
    assert spans
    for story, story_spans in spans.items():
        ordered = sorted(story_spans)
        overlaps = [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]
        assert not overlaps, f"{story}: runs overlapped {overlaps}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.name for scenario in SCENARIOS])
def test_the_pipeline_on_postgresql(
    postgres: dict[str, str], scenario: Scenario, fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    scenario.body(fleet, dagster)

    assert_runs_stored_in(postgres["DAGSTER_PG_DB"])
    with dg.DagsterInstance.from_config(str(dagster.home)) as instance:
        assert_one_run_per_story_at_a_time(instance)
