"""`td-pipeline bench ticks`: its report and workload (pure), and one run at tiny sizes."""

from __future__ import annotations

import argparse

import pytest

from td_pipeline.cli import main
from td_pipeline.devtools.bench_ticks import (
    SensorTimes,
    tick_table,
    usage_error,
    verdict,
    within_goal,
)
from td_pipeline.devtools.tick_workload import Clock, Workload, story


def test_the_table_shows_each_clock_at_both_sizes_their_ratio_and_reads_of_every_key() -> None:
    rows = [
        SensorTimes("request", Clock.WALL, 20.0, 25.0),
        SensorTimes("request", Clock.CPU, 10.0, 11.0),
        SensorTimes("result", Clock.WALL, 40.0, 80.0, 3),
    ]

    lines = tick_table(rows, 100, 50_000).splitlines()

    assert lines[0].split()[:2] == ["sensor", "clock"]
    assert "100 partitions (ms)" in lines[0] and "50,000 partitions (ms)" in lines[0]
    assert lines[1].split() == ["request", "wall", "20.0", "25.0", "x1.25", "0"]
    assert lines[2].split() == ["request", "CPU", "10.0", "11.0", "x1.10", "0"]
    assert lines[3].split() == ["result", "wall", "40.0", "80.0", "x2.00", "3"]
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_the_goal_is_every_ratio_within_and_no_read_of_every_key() -> None:
    wall = SensorTimes("request", Clock.WALL, 20.0, 29.0)
    cpu = SensorTimes("request", Clock.CPU, 10.0, 16.0)

    assert within_goal([wall])
    assert verdict([wall]) == "larger / smaller against x1.5: wall within; no read of every key"
    assert not within_goal([wall, cpu])
    assert "wall within, CPU OVER" in verdict([wall, cpu])
    read_all = SensorTimes("result", Clock.WALL, 20.0, 21.0, full_reads=2)
    assert not within_goal([read_all])
    # A sensor's reads are counted once, whatever the number of clocks.
    assert verdict([read_all, read_all]).endswith("; 2 reads of every partition key")


def test_a_ratio_over_nothing_is_infinite_not_an_error() -> None:
    assert SensorTimes("request", Clock.CPU, 0.0, 1.0).ratio == float("inf")


def test_every_turn_answers_stories_of_its_own_and_requests_new_ones_and_old() -> None:
    workload = Workload(requests=10, answers=5, turns=3)

    answered = [set(workload.answered_stories(turn)) for turn in range(4)]
    requested = [workload.request_stories(turn) for turn in range(4)]

    assert workload.submitted_stories == 20
    assert set().union(*answered) == set(range(20))  # each seeded story answered once
    assert all(len(stories) == 10 and len(set(stories)) == 10 for stories in requested)
    # A fifth re-derive a story with a history (its partition exists); the rest are new.
    assert requested[1][-2:] == [story(5), story(6)]
    assert not set(requested[0]) & set(requested[1])


def _args(small: int, large: int, answers: int = 2, turns: int = 2) -> argparse.Namespace:
    return argparse.Namespace(small=small, large=large, requests=4, answers=answers, turns=turns)


def test_the_sizes_must_hold_the_seeded_history() -> None:
    assert usage_error(_args(10, 50)) is None
    assert "--small must be at least 1 and below --large" in str(usage_error(_args(50, 50)))
    assert "6 stories with a history" in str(usage_error(_args(5, 50)))
    assert "at least 1" in str(usage_error(_args(10, 50, turns=0)))


@pytest.mark.pipeline  # 2-7 s here: two instances and two NATS servers
def test_the_benchmark_runs_at_tiny_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["bench", "ticks", "--small", "10", "--large", "50"]
    exit_code = main([*arguments, "--requests", "2", "--answers", "2", "--turns", "2"])

    out = capsys.readouterr().out
    assert exit_code == 0
    assert "10 partitions (ms)" in out and "50 partitions (ms)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("derivation_")]
    assert [row[:2] for row in rows] == [
        ["derivation_request_sensor", "wall"],
        ["derivation_request_sensor", "CPU"],
        ["derivation_result_sensor", "wall"],
        ["derivation_result_sensor", "CPU"],
    ]
    assert all(row[4].startswith("x") and row[5] == "0" for row in rows)
    assert "no read of every key" in out
