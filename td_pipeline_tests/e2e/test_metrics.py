"""`td-pipeline serve-metrics` end to end: the real command against the local fleet and a real
dagster-daemon. Counters move as derivations complete and fail, the request consumer's lag
rises with a backlog and falls back once the daemon runs, and /ready turns unready when NATS
stops."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.devtools.metrics_process import MetricsProcess
from td_pipeline.infrastructure.jetstream_consumer import JetStreamPuller
from td_pipeline.orchestration.resources import NatsResource
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.e2e.test_restarts import publish
from td_pipeline_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(30)]

FAILED_BY_THE_LLM = "STORY-MFA"
REQUESTS = [
    {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS"},  # completes
    {"plan_id": "PLAN-AUTH-1", "story_id": FAILED_BY_THE_LLM},  # the LLM fails: llm, retried
    {"plan_id": "PLAN-NOPE", "story_id": "STORY-NOPE"},  # Planning: NOT_FOUND: bad_request
]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / f"{FAILED_BY_THE_LLM}.txt").write_text("@fail vLLM request timed out\n")
    with LocalFleet(tmp_path / "fleet", backend=ReplayLlm(answers)) as fleet:
        yield fleet


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return prepare_home(tmp_path / "dagster_home")


@pytest.fixture
def metrics_url(fleet: LocalFleet, home: Path, tmp_path: Path) -> Iterator[str]:
    # The real command (the installed `td-pipeline`), on a free port it picks.
    server = MetricsProcess(fleet.environment(), home, tmp_path / "serve-metrics.log").start()
    try:
        yield server.url
    finally:
        assert server.stop() == 0  # a clean stop on SIGTERM


def scrape(url: str, keep: Path | None = None) -> Samples:
    with urllib.request.urlopen(f"{url}/metrics", timeout=20) as answer:
        text = answer.read().decode()
    if keep is not None:
        keep.write_text(text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def ready(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=20) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_follow_a_backlog_outcomes_and_nats_going_away(
    fleet: LocalFleet, home: Path, metrics_url: str, tmp_path: Path
) -> None:
    nats_url = fleet.environment()["NATS_URL"]
    # The request sensor's own durable, as its first tick would make it: the backlog builds up
    # in it while no daemon runs.
    spec = NatsResource(url=nats_url).request_consumer()
    puller = JetStreamPuller(nats_url)
    puller.ensure_consumer(spec)
    puller.close()
    lag_key = (
        "td_consumer_pending_messages",
        (("durable", spec.durable), ("stream", spec.stream)),
    )
    asyncio.run(publish(nats_url, REQUESTS))

    backlog = wait_until(
        lambda: (s := scrape(metrics_url))[lag_key] == 3 and s, 20, "lag of 3 requests"
    )
    assert backlog[("td_derivations_requested_total", ())] == 3
    status, body = ready(metrics_url)
    assert status == 503 and "NOT READY daemon" in body and "ok nats" in body, body

    with DagsterProcesses(home, fleet.environment(), tmp_path / "logs"):
        wait_until(lambda: scrape(metrics_url)[lag_key] == 0, 60, "the backlog taken", 0.5)
        wait_until(lambda: ready(metrics_url)[0] == 200, 60, "ready with the daemon", 0.5)

        def outcomes() -> Samples | None:
            s = scrape(metrics_url, tmp_path / "last-scrape.txt")
            done = (
                s[("td_derivations_completed_total", ())] >= 1
                and s[("td_derivations_failed_total", (("reason", "llm"),))] >= 1
                and s[("td_derivations_failed_total", (("reason", "bad_request"),))] >= 1
            )
            return s if done else None

        after = wait_until(outcomes, 75, "a completed, an LLM failure and a bad request", 1)
        assert after[("td_derivation_request_to_completed_seconds_count", ())] >= 1
        assert after[("td_derivation_request_to_completed_seconds_sum", ())] > 0
        assert after[("td_derivations_failed_total", (("reason", "validation"),))] == 0
        assert after[("td_derivations_requested_total", ())] == 3
        sensor = (("sensor", "derivation_request_sensor"),)
        assert 0 <= after[("td_sensor_last_success_age_seconds", sensor)] < 60
        assert after[("td_nats_fetch_stalls_total", sensor)] == 0  # read from its cursor
        assert ("td_runs_queued", (("job", "derive_tasks"),)) in after
        assert ("td_llm_waiting_attempts", ()) in after
        assert after[("td_llm_window", ())] >= 1 and ("td_llm_jobs_in_flight", ()) in after
        assert all(
            after[("td_metrics_source_up", (("source", source),))] == 1
            for source in ("stream", "nats", "dagster")
        )

        assert fleet.nats is not None
        fleet.nats.stop()
        status, body = wait_until(
            lambda: (r := ready(metrics_url))[0] == 503 and r, 20, "unready without NATS", 0.5
        )
        assert "NOT READY nats" in body and "ok planning" in body, body
        without_nats = scrape(metrics_url)  # still answers, from what it had
        assert without_nats[("td_dependency_up", (("dependency", "nats"),))] == 0
        assert without_nats[("td_derivations_requested_total", ())] == 3
