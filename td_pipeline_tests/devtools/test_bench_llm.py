"""`td-pipeline bench e2e --llm-slots N --llm-seconds S`: its arguments, the phase's settling
against a real NATS server (a stand-in answers for the pipeline), the report and its ratio to
the LLM's floor, and the picture. A real run takes minutes (a daemon, runs);
docs/benchmarks.md shows one."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import nats
import pytest

from td_pipeline.cli import main
from td_pipeline.devtools.bench_llm import LlmRun, llm_phase, llm_picture, llm_report
from td_pipeline.devtools.png_chart import BLUE, GREY, ORANGE, Colour, nice_ticks
from td_pipeline.infrastructure.subjects import (
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_REQUESTED,
)
from td_pipeline.sandbox.llm_capacity import JobPlan, LlmCapacity, plan_jobs
from td_pipeline.sandbox.nats_server import NatsServer

CAPACITY = LlmCapacity(slots=4, service_seconds=4.0)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--llm-slots", "4"], "--llm-slots needs --llm-seconds"),
        (["--llm-seconds", "0"], "--llm-seconds must be a number of seconds above 0, not 0"),
        (["--picture", "x.png"], "--picture needs --llm-seconds"),
        (["--llm-seconds", "1", "--burst"], "--burst is not for a run against the LLM's floor"),
        (
            ["--llm-seconds", "1", "--floor-stories", "3"],
            "--floor-stories is not for a run against the LLM's floor",
        ),
    ],
)
def test_llm_flags_that_make_no_sense_are_refused_in_one_line_before_anything_starts(
    arguments: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "e2e", *arguments]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"td-pipeline bench e2e: {error}"]


def run_of(
    completed_at: list[float], plans: list[JobPlan], stories: int = 120, failed_events: int = 0
) -> LlmRun:
    seconds = max([*completed_at, *(plan.end for plan in plans)], default=0.0)
    return LlmRun(CAPACITY, stories, tuple(completed_at), failed_events, 0, tuple(plans), seconds)


def test_the_report_gives_the_figures_and_the_ratio_to_the_llms_floor() -> None:
    # 120 jobs at once on 4 slots of 4 s with the fleet's 60 s timeout: 15 rounds answered.
    plans = plan_jobs([0.5] * 120, CAPACITY)
    answered = [plan.end + 2.0 for plan in plans if not plan.timed_out]
    run = run_of(answered, plans, failed_events=60)

    assert llm_report(run, Path("out/llm.png")).splitlines() == [
        "stories completed       60/120",
        "failed events           60 (task.derivation.failed; 0 stories gave up)",
        "executor timeouts       60 of 120 jobs",
        "peak jobs in flight     120 at the executor (4 slots)",
        "last completed event    62.5 s after the first request",
        "LLM floor               120.0 s = ceil(120 / 4) x 4 s",
        "last completed / floor  x0.52",
        "picture                 out/llm.png (jobs in flight over time)",
        "",
        "NOT settled: 60 of 120 stories (neither completed nor given up)",
    ]


def test_a_settled_run_has_no_unsettled_line_and_unlimited_slots_have_one_round() -> None:
    capacity = LlmCapacity(slots=None, service_seconds=2.0)
    plans = plan_jobs([0.0, 0.0, 0.1], capacity)
    run = LlmRun(
        capacity, 3, (3.0, 3.1), failed_events=2, gave_up=1, plans=tuple(plans), seconds=3.1
    )

    lines = llm_report(run, None).splitlines()

    assert lines[1].endswith("2 (task.derivation.failed; 1 stories gave up)")
    assert lines[3:] == [
        "peak jobs in flight     3 at the executor (unlimited slots)",
        "last completed event    3.1 s after the first request",
        "LLM floor               2.0 s = one round of 2 s (unlimited slots)",
        "last completed / floor  x1.55",
    ]


def test_with_nothing_completed_there_is_no_ratio() -> None:
    lines = llm_report(run_of([], [], stories=2), None).splitlines()

    assert lines[4:7] == [
        "last completed event    none",
        "LLM floor               4.0 s = ceil(2 / 4) x 4 s",
        "last completed / floor  -",
    ]
    assert lines[-1] == "NOT settled: 2 of 2 stories (neither completed nor given up)"


def pixels(png: bytes) -> tuple[int, int, set[Colour]]:
    """Width, height and the colours of an 8-bit RGB PNG with no row filters (as written)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    chunks, offset = b"", 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            chunks += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(chunks)
    assert len(raw) == height * (1 + 3 * width)
    rows = (raw[y * (1 + 3 * width) + 1 : (y + 1) * (1 + 3 * width)] for y in range(height))
    colours = {(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, 3 * width, 3)}
    return width, height, colours


def test_the_picture_shows_jobs_in_flight_and_the_slots_and_the_window_only_when_given() -> None:
    plans = plan_jobs([0.0] * 12 + [10.0] * 4, CAPACITY)
    run = run_of([5.0], plans, stories=16)

    width, height, colours = pixels(llm_picture(run))

    assert (width, height) == (960, 480)
    assert {BLUE, GREY} <= colours and ORANGE not in colours
    windowed = replace(run, window=((0.0, 4.0), (8.0, 6.0)))
    assert ORANGE in pixels(llm_picture(windowed))[2]


def test_ticks_are_round_and_reach_the_top() -> None:
    assert nice_ticks(40.0) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert nice_ticks(123.0) == [0.0, 50.0, 100.0, 150.0]
    assert nice_ticks(0.7) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(0.0) == [0.0, 1.0]


class FakeWindow:
    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> float | None:
        self.reads += 1
        return 3.0


async def answer_like_the_pipeline(url: str, answered: threading.Event) -> None:
    """Completes the first story, gives the second up after one retried failure, once all
    requests are in."""
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        requests = await jetstream.subscribe(DERIVATION_REQUESTED, ordered_consumer=True)
        seen = [json.loads((await requests.next_msg(timeout=10)).data) for _ in range(3)]
        first, second, _ = (request["story_id"] for request in seen)
        await jetstream.publish(DERIVATION_COMPLETED, json.dumps({"story_id": first}).encode())
        for manual in (False, True):
            failed = {"story_id": second, "requires_manual_review": manual}
            await jetstream.publish(DERIVATION_FAILED, json.dumps(failed).encode())
        answered.set()
    finally:
        await connection.close()


def test_the_phase_ends_when_every_story_is_completed_or_given_up(server: NatsServer) -> None:
    stories = [("S-1", "P-1"), ("S-2", "P-2"), ("S-3", "P-3")]
    answered = threading.Event()
    answering = threading.Thread(
        target=asyncio.run, args=(answer_like_the_pipeline(server.url, answered),)
    )
    answering.start()
    window = FakeWindow()

    async def phase_then_complete_the_third() -> LlmRun:
        phase = asyncio.create_task(
            llm_phase(server.url, stories, CAPACITY, tuple, lambda: None, 20, window)
        )
        await asyncio.to_thread(answered.wait, 10)
        connection = await nats.connect(server.url)
        await connection.jetstream().publish(
            DERIVATION_COMPLETED, json.dumps({"story_id": "S-3"}).encode()
        )
        await connection.close()
        return await phase

    run = asyncio.run(phase_then_complete_the_third())
    answering.join(10)

    assert (len(run.completed_at), run.failed_events, run.gave_up, run.unsettled) == (2, 2, 1, 0)
    assert run.plans == () and window.reads >= 1 and run.window[0][1] == 3.0
