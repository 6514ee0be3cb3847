"""The LLM window at work: the request sensor fetches only what the window has room for, the
result sensor learns the window from the answers, and the jobs in flight are counted from the
instance (nothing kept that could leak)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from td_pipeline.application.llm_window import PREPARED_WINDOWS, LlmWindow, room
from td_pipeline.application.ports import (
    DeliberationStatus,
    ExecutorSubmission,
    SubmissionReceipt,
    Unavailable,
)
from td_pipeline.infrastructure.subjects import AGENT_RESPONSES_STREAM, DERIVATION_STREAM
from td_pipeline.orchestration import llm_admission
from td_pipeline.orchestration.attempts import Phase
from td_pipeline.orchestration.llm_admission import (
    GATE_POLL_SECONDS,
    LlmGate,
    LlmLoad,
    Preparing,
    llm_jobs_in_flight,
    llm_load,
    read_window,
    write_window,
)
from td_pipeline.orchestration.resources import DerivationSettings
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.sandbox.nats_server import NatsServer, ensure_streams
from td_pipeline_tests.fixtures import fleet_message
from td_pipeline_tests.instance_records import record_submission
from td_pipeline_tests.orchestration.test_attempts import add_run
from td_pipeline_tests.orchestration.test_sensors import (
    LLM_SETTINGS,
    _publish,
    _publish_failure,
    _publish_responses,
    _request_consumer,
    response,
    tick,
)

NOW = datetime.now(UTC)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        asyncio.run(ensure_streams(server.url, [DERIVATION_STREAM, AGENT_RESPONSES_STREAM]))
        yield server


def derive_run(
    instance: dg.DagsterInstance, story: str, status: dg.DagsterRunStatus, derivation: str
) -> None:
    add_run(instance, story, Phase.DERIVE, derivation, status=status)


def submission(instance: dg.DagsterInstance, story: str, derivation: str, at: datetime) -> None:
    instance.add_dynamic_partitions("stories", [story])
    record_submission(instance, story, derivation, at)


def persist_run(instance: dg.DagsterInstance, story: str, derivation: str) -> None:
    add_run(instance, story, Phase.PERSIST, derivation, status=dg.DagsterRunStatus.STARTED)


def test_jobs_in_flight_are_counted_from_runs_and_submissions_once_each(
    instance: dg.DagsterInstance,
) -> None:
    recent = NOW - timedelta(seconds=30)
    derive_run(instance, "A", dg.DagsterRunStatus.STARTED, "d-a")  # submitted, run not done
    submission(instance, "A", "d-a", recent)
    derive_run(instance, "B", dg.DagsterRunStatus.NOT_STARTED, "d-b")  # about to submit
    submission(instance, "C", "d-c", recent)  # waiting for its answer
    submission(instance, "D", "d-d", recent)
    persist_run(instance, "D", "d-d")  # answered: its slot is free
    derive_run(instance, "E", dg.DagsterRunStatus.FAILURE, "d-e")  # failed before submitting
    derive_run(instance, "F", dg.DagsterRunStatus.CANCELED, "d-f")  # cancelled
    submission(instance, "G", "d-g", NOW - timedelta(hours=2))  # given up long ago

    assert llm_jobs_in_flight(instance, NOW, llm_timeout_seconds=600) == 3  # A, B, C


def test_requests_beyond_the_window_wait_in_the_stream_undelivered(server: NatsServer) -> None:
    admitted = room(LlmWindow(limit=2), in_flight=0, cap=256)  # and as many prepared ahead
    requests = [{"plan_id": f"P-{n}", "story_id": f"S-{n}"} for n in range(admitted + 1)]
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=2))
        first = tick(instance, server.url, None)
    consumer = asyncio.run(_request_consumer(server.url))

    stories = [
        item["story"]
        for run in first.run_requests or []
        for item in run.run_config["ops"]["derive_stories"]["config"]["stories"]
    ]
    assert admitted > 2 and stories == [f"S-{n}" for n in range(admitted)]  # in order
    assert consumer.num_pending == 1 and consumer.delivered.consumer_seq == admitted


def test_a_full_window_fetches_nothing_and_the_tick_says_why(server: NatsServer) -> None:
    requests = [{"plan_id": f"P-{n}", "story_id": f"S-{n}"} for n in range(2)]
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=1))
        busy = room(LlmWindow(limit=1), in_flight=0, cap=256)  # at the executor and prepared
        for n in range(busy - 1):
            derive_run(instance, f"BUSY-{n}", dg.DagsterRunStatus.STARTED, f"d-busy-{n}")
        submission(instance, "WAITING", "d-waiting", NOW)
        result = tick(instance, server.url, None)
    consumer = asyncio.run(_request_consumer(server.url))

    assert result.run_requests == []
    assert result.skip_reason is not None and result.skip_reason.skip_message == (
        f"2 request(s) wait in the stream: {busy} LLM job(s) in flight (at the executor or "
        "being prepared) for a window of 1"
    )
    assert consumer.delivered.consumer_seq == 0  # not even delivered: no delivery spent


def test_refused_requests_hold_no_slot(server: NatsServer) -> None:
    bad = [b"{broken"] * 3
    good = [json.dumps({"plan_id": "P-1", "story_id": "S-1"}).encode()]
    asyncio.run(_publish(server.url, [*bad, *good]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=1))
        result = tick(instance, server.url, None)

    assert [r.partition_key for r in result.run_requests or []] == ["S-1"]


def test_the_result_sensor_learns_the_window_from_answers_and_timeouts(
    server: NatsServer,
) -> None:
    with dg.instance_for_test() as instance:
        submission(instance, "STORY-A", "d-a", datetime.now(UTC) - timedelta(seconds=4))
        derive_run(instance, "STORY-A", dg.DagsterRunStatus.SUCCESS, "d-a")
        asyncio.run(_publish_responses(server.url, [response("STORY-A", "PLAN-STORY-A", "d-a")]))
        first = tick(instance, server.url, None, derivation_result_sensor)
        widened = read_window(instance)

        failed = "d-0123456789abcdef"  # the fleet failure fixture's task id names it
        submission(instance, "STORY-B", failed, datetime.now(UTC) - timedelta(seconds=60))
        derive_run(instance, "STORY-B", dg.DagsterRunStatus.SUCCESS, failed)
        asyncio.run(_publish_failure(server.url, fleet_message("agent_response_failed")))
        tick(instance, server.url, first.cursor, derivation_result_sensor)
        narrowed = read_window(instance)

    # One job answered fast: learnt, but a window of two is not widened by a job alone.
    assert widened.fastest_seconds == pytest.approx(4, abs=1) and widened.served == 1
    assert widened.limit == 2
    assert narrowed.limit == 1  # the executor's TimeoutError halves it


def test_the_stored_window_reads_back_as_written(instance: dg.DagsterInstance) -> None:
    learnt = LlmWindow(7.5, 4.2, threshold=6.0, shrunk_at=5.0, round_at=9.0, served=4)
    write_window(instance, learnt)
    assert read_window(instance) == learnt


def test_an_unreadable_stored_window_is_relearnt(instance: dg.DagsterInstance) -> None:
    instance.run_storage.set_cursor_values({"td_pipeline.llm_window": "{not json"})
    assert read_window(instance) == LlmWindow()


def test_the_load_tells_jobs_at_the_executor_from_stories_being_prepared(
    instance: dg.DagsterInstance,
) -> None:
    recent = NOW - timedelta(seconds=30)
    derive_run(instance, "A", dg.DagsterRunStatus.STARTED, "d-a")  # handed over
    submission(instance, "A", "d-a", recent)
    derive_run(instance, "B", dg.DagsterRunStatus.STARTED, "d-b")  # not handed over yet
    submission(instance, "B", "d-b-earlier", recent)  # an earlier derivation's job
    derive_run(instance, "C", dg.DagsterRunStatus.NOT_STARTED, "d-c")

    load = llm_load(instance, NOW, llm_timeout_seconds=600)

    assert load.at_executor == {"A", "B"}
    assert sorted(p.story for p in load.preparing) == ["B", "C"]
    assert load.in_flight == 3


def test_stories_of_runs_started_earlier_go_first() -> None:
    load = LlmLoad(
        at_executor=frozenset(),
        preparing=(
            Preparing("S1", "run-early", started_at=10.0),
            Preparing("S2", "run-early", started_at=10.0),
            Preparing("S3", "run-mine", started_at=20.0),
            Preparing("S4", "run-late", started_at=30.0),
            Preparing("S5", "run-queued", started_at=None),
        ),
    )
    assert load.ahead_of("run-mine") == 2  # S1, S2; not its own, nor later or queued runs
    assert load.ahead_of("run-early") == 0
    assert load.ahead_of("run-by-hand") == 4  # unknown: behind every started run


class Executor:
    """The executor's word on its jobs: `running` until told otherwise."""

    def __init__(self) -> None:
        self.done: set[str] = set()

    def submit(self, submission: ExecutorSubmission) -> SubmissionReceipt:
        raise AssertionError("the gate submits nothing")

    def deliberation_status(self, deliberation_id: str) -> DeliberationStatus:
        return DeliberationStatus("completed" if deliberation_id in self.done else "running")


def gate(
    instance: dg.DagsterInstance,
    lines: list[str],
    sleep: Callable[[float], None],
    executor: Executor | None = None,
    clock: Callable[[], float] = lambda: 0.0,
) -> LlmGate:
    settings = DerivationSettings(**LLM_SETTINGS, llm_timeout_seconds=60)
    return LlmGate(
        instance, "run-mine", executor or Executor(), settings, lines.append, sleep, clock
    )


def never(seconds: float) -> None:
    raise AssertionError("the gate waited although a slot was free")


BUSY_JOB = "deliberation-td:d-busy:1-1"  # add_submission's deliberation id


def test_the_gate_opens_at_once_while_the_window_has_slots_and_reads_them_once(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_window(instance, LlmWindow(limit=3))
    submission(instance, "BUSY", "d-busy", NOW)
    reads: list[int] = []
    counted = llm_admission.llm_load

    def counting(*args: Any) -> LlmLoad:
        reads.append(1)
        return counted(*args)

    monkeypatch.setattr(llm_admission, "llm_load", counting)
    lines: list[str] = []
    opened = gate(instance, lines, never)
    opened.wait_for_slot("S1")
    opened.wait_for_slot("S2")  # the second of the two slots read at once

    assert (len(reads), lines) == (1, [])


def test_a_slot_frees_when_the_executor_is_done_before_the_answer_is_seen(
    instance: dg.DagsterInstance,
) -> None:
    write_window(instance, LlmWindow(limit=1))
    submission(instance, "BUSY", "d-busy", NOW)  # no persist run: its answer not seen yet
    executor = Executor()
    lines: list[str] = []
    waits: list[float] = []

    def done_meanwhile(seconds: float) -> None:
        waits.append(seconds)
        executor.done.add(BUSY_JOB)

    gate(instance, lines, done_meanwhile, executor).wait_for_slot("S1")

    assert waits == [GATE_POLL_SECONDS]
    assert lines == [
        "S1 waits for a free LLM slot: 1 LLM job(s) at the executor of a window of 1, "
        "0 story(ies) ahead"
    ]


def test_the_gate_fails_the_story_for_a_retry_when_no_slot_frees(
    instance: dg.DagsterInstance,
) -> None:
    write_window(instance, LlmWindow(limit=1))
    submission(instance, "BUSY", "d-busy", NOW)
    now = [0.0]

    def slow_clock_sleep(seconds: float) -> None:
        now[0] += 50.0

    stuck = gate(instance, [], slow_clock_sleep, clock=lambda: now[0])
    with pytest.raises(dg.Failure, match="no free LLM slot for S1 within") as failure:
        stuck.wait_for_slot("S1")
    # Given up at the first look past the LLM timeout (60 s) for each window prepared, and one.
    given_up_after = (1 + PREPARED_WINDOWS) * 60
    assert given_up_after <= now[0] < given_up_after + 50
    assert failure.value.metadata["retryable"].value is True
    # As an outage: a batch does not make its other stories wait as long, one after the other.
    assert isinstance(failure.value.__cause__, Unavailable)


class Unsure(Executor):
    """An executor with a status of its own for a queued job, and one that does not answer."""

    def deliberation_status(self, deliberation_id: str) -> DeliberationStatus:
        if deliberation_id.endswith("d-queued:1-1"):
            return DeliberationStatus("queued")
        raise Unavailable("executor down")


def test_a_job_holds_its_slot_unless_the_executor_says_it_is_done(
    instance: dg.DagsterInstance,
) -> None:
    write_window(instance, LlmWindow(limit=2))
    submission(instance, "QUEUED", "d-queued", NOW)
    submission(instance, "SILENT", "d-silent", NOW)
    now = [0.0]

    def slow_clock_sleep(seconds: float) -> None:
        now[0] += 100.0

    stuck = gate(instance, [], slow_clock_sleep, Unsure(), clock=lambda: now[0])
    with pytest.raises(dg.Failure, match="2 LLM job"):
        stuck.wait_for_slot("S1")
