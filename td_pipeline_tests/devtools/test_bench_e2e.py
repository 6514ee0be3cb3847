"""`td-pipeline bench e2e`: its arguments, percentiles, the stack's memory from a /proc snapshot,
the report.

A real `bench e2e --burst` takes minutes even with a handful of stories (two phases of Dagster
runs after a warm-up), so it has no test here; docs/benchmarks.md shows a run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from td_pipeline.cli import build_parser, main
from td_pipeline.devtools.bench import floor_count
from td_pipeline.devtools.bench_phases import Phase, quantile, report
from td_pipeline.devtools.process_memory import (
    ProcessMemory,
    memory_supported,
    parse_stat,
    read_processes,
    sampling,
    stack_members,
    stack_rss,
)
from td_pipeline_tests.support import wait_until

MIB = 2**20


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--stories", "0"], "--stories must be at least 1"),
        (["--floor-stories", "0"], "--floor-stories must be at least 1"),
        (["--stories", "1000", "--floor-stories", "-5"], "--floor-stories must be at least 1"),
        (["--instance-config", "/nonexistent/dagster.yaml"], "no instance config at"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_anything_starts(
    arguments: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "e2e", *arguments]) == 2

    output = capsys.readouterr()
    lines = (output.out + output.err).splitlines()
    assert len(lines) == 1 and lines[0].startswith("td-pipeline bench e2e: ") and error in lines[0]


def test_the_floor_runs_as_many_items_as_asked_at_most_the_stories_and_100_by_default() -> None:
    assert floor_count(1000, None) == 100
    assert floor_count(50, None) == 50
    assert floor_count(1000, 250) == 250
    assert floor_count(50, 500) == 50


def test_the_defaults_leave_a_1000_story_phase_time_and_the_help_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser(["bench", "e2e"])
    args = parser.parse_args(["bench", "e2e"])
    assert (args.stories, args.floor_stories, args.timeout) == (50, None, 1800.0)
    assert parser.parse_args(["bench", "e2e", "--floor-stories", "7"]).floor_stories == 7

    with pytest.raises(SystemExit):
        main(["bench", "e2e", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--floor-stories N" in help_text and "at most 100" in help_text
    assert "default: 1800" in help_text


def test_quantiles_take_the_nearest_rank() -> None:
    values = [float(n) for n in range(20, 0, -1)]  # 20 .. 1, unsorted

    assert quantile(values, 0.5) == 11.0  # rank round(9.5) = 10 of 0..19
    assert quantile(values, 0.95) == 19.0  # rank round(18.05) = 18
    assert quantile(values, 0.0) == 1.0 and quantile(values, 1.0) == 20.0
    assert quantile([7.0], 0.95) == 7.0
    assert math.isnan(quantile([], 0.5))


def test_a_stat_line_is_read_after_the_last_parenthesis_of_the_name() -> None:
    # state ppid pgrp session, then 17 fields up to rss (the 24th of the line), then more.
    fields_after_name = ["S", "41", "42", "43", *["0"] * 17, "250", "0", "0"]
    line = "4242 (run (worker) 1) " + " ".join(fields_after_name) + "\n"

    assert parse_stat(line, page_size=4096) == ProcessMemory(4242, 41, 43, 250 * 4096)


def _process(pid: int, ppid: int, session: int, mib: int) -> ProcessMemory:
    return ProcessMemory(pid, ppid, session, mib * MIB)


SNAPSHOT = [
    _process(1, 0, 1, 10),  # init
    _process(50, 1, 50, 5),  # the terminal's shell
    _process(100, 50, 50, 300),  # the bench (and the fleet's gRPC stand-ins)
    _process(110, 100, 110, 20),  # nats-server, its own session
    _process(120, 100, 120, 200),  # dagster-daemon, its own session
    _process(121, 120, 120, 250),  # a code server
    _process(122, 121, 120, 180),  # a run worker
    _process(123, 1, 120, 170),  # a run worker whose code server died: reparented to init
    _process(130, 100, 50, 40),  # a child in the bench's own session
    _process(60, 50, 50, 999),  # another command of the same shell: not ours
    _process(200, 1, 200, 999),  # someone else's daemon
]


def test_the_stack_is_the_root_its_descendants_and_the_sessions_they_lead() -> None:
    members = {process.pid for process in stack_members(SNAPSHOT, 100)}

    assert members == {100, 110, 120, 121, 122, 123, 130}
    assert stack_rss(SNAPSHOT, 100) == (300 + 20 + 200 + 250 + 180 + 170 + 40) * MIB
    assert stack_rss(SNAPSHOT, 121) == (250 + 180) * MIB  # its session is the root's own
    assert stack_rss(SNAPSHOT, 999) == 0  # the root is gone


def test_this_process_and_a_child_in_a_session_of_its_own_are_counted() -> None:
    assert memory_supported() is None  # the tests run on Linux
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:

        def child_counted() -> dict[int, ProcessMemory] | None:
            found = {p.pid: p for p in stack_members(read_processes(), os.getpid())}
            return found if child.pid in found and found[child.pid].rss_bytes > 0 else None

        members = wait_until(child_counted, 10, "the child in the stack")
        assert members[os.getpid()].rss_bytes > 10 * MIB
        assert members[child.pid].session == child.pid
        with sampling(interval=0.05) as memory:
            peak = memory.take_peak()
        assert peak >= members[os.getpid()].rss_bytes + members[child.pid].rss_bytes // 2
    finally:
        child.kill()
        child.wait()


def test_memory_is_read_from_proc_and_only_there(tmp_path: Path) -> None:
    assert "only Linux" in str(memory_supported(tmp_path))


def _phase(name: str, latencies: list[float], expected: int, peak_mib: int | None) -> Phase:
    peak = None if peak_mib is None else peak_mib * MIB
    return Phase(name, tuple(latencies), max(latencies, default=0.0), expected, peak)


def test_without_burst_the_report_is_the_table_it_always_was() -> None:
    pipeline = _phase("pipeline", [30.0, 60.0], 2, None)
    floor = _phase("engine floor", [20.0, 40.0], 2, None)

    assert report(pipeline, floor).splitlines() == [
        "                  done    p50 s    p95 s  per min",
        "pipeline         2/2       30.0     60.0      2.0",
        "engine floor     2/2       20.0     40.0      3.0",
        "",
        "pipeline / engine floor: p50 x1.50, p95 x1.50, throughput x0.67 "
        "(median of all: 45.0s vs 30.0s)",
    ]


def test_a_burst_report_adds_peak_memory_and_its_ratio_and_says_all_completed() -> None:
    pipeline = _phase("pipeline", [float(n) for n in range(1, 1001)], 1000, 1536)
    floor = _phase("engine floor", [float(n) for n in range(1, 1001)], 1000, 1024)

    lines = report(pipeline, floor, burst=True).splitlines()

    assert lines[0].split() == ["done", "p50", "s", "p95", "s", "per", "min", "peak", "MiB"]
    assert lines[1].split() == ["pipeline", "1000/1000", "501.0", "950.0", "60.0", "1536"]
    assert lines[2].split() == ["engine", "floor", "1000/1000", "501.0", "950.0", "60.0", "1024"]
    assert len({len(line) for line in lines[:3]}) == 1  # columns line up at four digits too
    assert "throughput x1.00, peak memory x1.50 (" in lines[4]
    assert lines[-1] == "all completed"


def test_a_burst_report_names_what_did_not_complete() -> None:
    pipeline = _phase("pipeline", [10.0, 20.0], 5, 900)
    floor = _phase("engine floor", [5.0, 6.0, 7.0], 5, 800)

    text = report(pipeline, floor, burst=True)

    assert text.splitlines()[1].split()[1] == "2/5"
    assert text.endswith("NOT completed: pipeline 3 of 5, engine floor 2 of 5")
    assert pipeline.missing == 3


@pytest.mark.parametrize("burst", [False, True])
def test_a_smaller_floor_is_named_and_compared_by_rate_and_memory_only(burst: bool) -> None:
    # 1000 stories in 600 s; 100 floor items in 240 s.
    pipeline = _phase("pipeline", [0.6 * n for n in range(1, 1001)], 1000, 1536 if burst else None)
    floor = _phase("engine floor", [2.4 * n for n in range(1, 101)], 100, 1024 if burst else None)

    lines = report(pipeline, floor, burst=burst).splitlines()

    assert lines[1].split()[1:] == ["1000/1000", "300.6", "570.0", "100.0", *(["1536"] * burst)]
    assert lines[2].split()[2:] == ["100/100", "122.4", "228.0", "25.0", *(["1024"] * burst)]
    assert len({len(line) for line in lines[:3]}) == 1
    assert lines[4] == (
        "pipeline 1000 stories / engine floor 100 items: throughput x4.00"
        + (", peak memory x1.50" if burst else "")
        + " (p50 and p95 grow with a burst's size: compared at equal sizes)"
    )
    assert lines[-1] == ("all completed" if burst else lines[4])


@pytest.mark.parametrize("burst", [False, True])
def test_with_nothing_completed_there_is_no_ratio_to_divide(burst: bool) -> None:
    pipeline = _phase("pipeline", [], 3, 0 if burst else None)
    floor = _phase("engine floor", [1.0], 3, 0 if burst else None)

    text = report(pipeline, floor, burst=burst)

    assert "pipeline / engine floor" not in text
    assert text.splitlines()[1].split()[1:] == ["0/3", "nan", "nan", "0.0", *(["0"] * burst)]
