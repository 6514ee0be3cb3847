"""The LLM-under-load model the executor stand-in plays: N slots in arrival order, S seconds
each, a timeout counting queue and service together. Pure: times are given, no clock."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from td_pipeline.sandbox.llm_capacity import (
    JobPlan,
    LlmCapacity,
    LlmLoad,
    ServiceQueue,
    in_flight_steps,
    load_at,
    peak_in_flight,
    plan_jobs,
)
from td_pipeline.sandbox.llm_flags import add_llm_capacity_arguments, llm_capacity_from


def ends(plans: list[JobPlan]) -> list[tuple[float | None, float, bool]]:
    return [(plan.start, round(plan.end, 9), plan.timed_out) for plan in plans]


def test_two_slots_serve_in_arrival_order_and_late_jobs_time_out_while_served() -> None:
    plans = plan_jobs([0.0] * 6, LlmCapacity(slots=2, service_seconds=0.2, timeout_seconds=0.5))

    assert ends(plans) == [
        (0.0, 0.2, False),
        (0.0, 0.2, False),
        (0.2, 0.4, False),
        (0.2, 0.4, False),
        (0.4, 0.5, True),  # its slot is given up at the timeout, as vLLM aborts the request
        (0.4, 0.5, True),
    ]


def test_a_job_still_queued_at_its_deadline_is_never_served_and_holds_no_slot() -> None:
    capacity = LlmCapacity(slots=1, service_seconds=1.0, timeout_seconds=1.5)

    plans = plan_jobs([0.0, 0.0, 0.0, 1.2], capacity)

    assert ends(plans) == [
        (0.0, 1.0, False),
        (1.0, 1.5, True),  # served from 1.0, out of time at 1.5
        (None, 1.5, True),  # queued until its deadline: never served
        (1.5, 2.5, False),  # the slot the timed-out job gave up at 1.5
    ]


def test_queue_time_counts_against_the_timeout() -> None:
    capacity = LlmCapacity(slots=1, service_seconds=4.0, timeout_seconds=10.0)

    plans = plan_jobs([0.0, 0.0, 0.0], capacity)

    assert ends(plans) == [(0.0, 4.0, False), (4.0, 8.0, False), (8.0, 10.0, True)]


def test_unlimited_slots_serve_every_job_at_once() -> None:
    plans = plan_jobs([0.0, 0.1, 0.1], LlmCapacity(slots=None, service_seconds=2.0))

    assert ends(plans) == [(0.0, 2.0, False), (0.1, 2.1, False), (0.1, 2.1, False)]
    assert ends(plan_jobs([0.0], LlmCapacity(None, 2.0, timeout_seconds=1.0))) == [(0.0, 1.0, True)]


def test_a_job_arriving_before_the_last_one_is_refused() -> None:
    queue = ServiceQueue(LlmCapacity(1, 1.0))
    queue.admit(5.0)
    with pytest.raises(ValueError, match="before the last one"):
        queue.admit(4.0)


@given(
    arrivals=st.lists(st.floats(0, 100, allow_nan=False), max_size=60).map(sorted),
    slots=st.integers(1, 8),
    service=st.floats(0.01, 20),
    timeout=st.floats(0.01, 60),
)
def test_never_more_served_than_slots_and_every_job_ends_within_its_timeout(
    arrivals: list[float], slots: int, service: float, timeout: float
) -> None:
    plans = plan_jobs(arrivals, LlmCapacity(slots, service, timeout))

    for plan in plans:
        assert plan.arrival < plan.end <= plan.arrival + timeout + 1e-9
        if not plan.timed_out:
            assert plan.start is not None and plan.end - plan.start == pytest.approx(service)
    moments = sorted({plan.start for plan in plans if plan.start is not None})
    for moment in moments:
        served = [p for p in plans if p.start is not None and p.start <= moment < p.end]
        assert len(served) <= slots
    # Earlier jobs get slots first, so no job ends before an earlier one.
    assert [plan.end for plan in plans] == sorted(plan.end for plan in plans)


def test_the_load_at_a_moment_counts_queued_served_answered_and_timed_out() -> None:
    plans = plan_jobs([0.0] * 6, LlmCapacity(2, 0.2, 0.5))

    assert load_at(plans, 0.1) == LlmLoad(queued=4, served=2, answered=0, timed_out=0)
    assert load_at(plans, 0.45) == LlmLoad(queued=0, served=2, answered=4, timed_out=0)
    assert load_at(plans, 0.5) == LlmLoad(queued=0, served=0, answered=4, timed_out=2)
    assert load_at(plans, 0.1).describe() == (
        "6 in flight (2 served, 4 queued), 0 answered, 0 timed out"
    )
    assert load_at(plans, -1.0).in_flight == 0  # none had arrived


def test_jobs_in_flight_are_a_step_function_with_its_peak() -> None:
    plans = plan_jobs([0.0, 0.0, 0.0, 1.0], LlmCapacity(2, 0.5, 0.8))

    # 0.5: two answered; 0.8: the third times out (served from 0.5); 1.0 -> 1.5: the fourth.
    assert in_flight_steps(plans) == [(0.0, 3.0), (0.5, 1.0), (0.8, 0.0), (1.0, 1.0), (1.5, 0.0)]
    assert peak_in_flight(plans) == 3
    assert in_flight_steps([]) == [] and peak_in_flight([]) == 0
    assert [p.arrival for p in (plan.shifted(10.0) for plan in plans)] == [-10.0] * 3 + [-9.0]


def test_the_floor_is_whole_rounds_of_service() -> None:
    assert LlmCapacity(4, 4.0).floor_seconds(120) == 120.0
    assert LlmCapacity(4, 4.0).floor_seconds(121) == 124.0
    assert LlmCapacity(None, 4.0).floor_seconds(120) == 4.0
    assert LlmCapacity(4, 4.0).floor_seconds(0) == 0.0


@pytest.mark.parametrize(
    ("slots", "seconds", "timeout", "error"),
    [
        (0, 1.0, 60.0, "slots must be at least 1"),
        (1, 0.0, 60.0, "seconds must be above 0"),
        (1, 1.0, 0.0, "timeout must be above 0"),
        (1, float("inf"), 60.0, "seconds must be above 0"),
    ],
)
def test_a_capacity_that_cannot_be_is_refused(
    slots: int, seconds: float, timeout: float, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        LlmCapacity(slots, seconds, timeout)


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_llm_capacity_arguments(parser)
    return parser.parse_args(list(flags))


def test_the_flags_read_into_a_capacity_with_the_fleets_timeout_by_default() -> None:
    assert llm_capacity_from(parse()) is None  # today's behaviour: answers at once
    assert llm_capacity_from(parse("--llm-slots", "4", "--llm-seconds", "4")) == LlmCapacity(
        4, 4.0, 60.0
    )
    assert llm_capacity_from(
        parse("--llm-seconds", "0.5", "--llm-timeout-seconds", "2")
    ) == LlmCapacity(None, 0.5, 2.0)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--llm-slots", "4"], "--llm-slots needs --llm-seconds"),
        (["--llm-timeout-seconds", "5"], "--llm-timeout-seconds needs --llm-seconds"),
        (["--llm-slots", "0", "--llm-seconds", "1"], "--llm-slots must be at least 1"),
        (["--llm-seconds", "0"], "--llm-seconds must be a number of seconds above 0"),
        (["--llm-seconds", "nan"], "--llm-seconds must be a number of seconds above 0"),
        (
            ["--llm-seconds", "1", "--llm-timeout-seconds", "-1"],
            "--llm-timeout-seconds must be a number of seconds above 0",
        ),
    ],
)
def test_flags_that_make_no_sense_are_named(flags: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        llm_capacity_from(parse(*flags))
