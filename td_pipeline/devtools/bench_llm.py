"""`td-pipeline bench e2e --llm-slots N --llm-seconds S`: the pipeline against a local fleet
whose executor plays a GPU cluster under load (`sandbox.llm_capacity`), measured against the
LLM's floor, `ceil(stories / slots) * seconds`: the least time the LLM needs for the stories,
however well the pipeline feeds it.

All requests go out at once. The phase ends when every story is settled (its completed
event, or a failed event with `requires_manual_review`: given up) or at `--timeout`. A failed
event that promises a retry leaves its story waiting for the retry schedule.

The report: stories completed, failed events (`task.derivation.failed`), the executor's
timeouts, the peak of jobs in flight at the executor, the time to the last completed event and
its ratio to the floor, and a PNG of jobs in flight over time.

The window: the pipeline's own limit on jobs in flight (its admission window, `td_llm_window`
on `td-pipeline serve-metrics`). A `WindowProbe` reading it is sampled during the phase and
drawn beside jobs in flight; without one, the picture shows jobs in flight alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from td_pipeline.devtools.png_chart import BLUE, GREY, ORANGE, Series, step_chart
from td_pipeline.infrastructure.subjects import (
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_REQUESTED,
)
from td_pipeline.sandbox.llm_capacity import (
    JobPlan,
    LlmCapacity,
    LlmLoad,
    Point,
    in_flight_steps,
    peak_in_flight,
)

DEFAULT_PICTURE = Path("bench-e2e-llm.png")
SAMPLE_SECONDS = 1.0  # the window probe is read this often
PROGRESS_SECONDS = 10.0


class WindowProbe(Protocol):
    """The pipeline's admission window now (`td_llm_window`), or None while it shows none."""

    def read(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class LlmRun:
    capacity: LlmCapacity
    stories: int
    completed_at: tuple[float, ...]  # seconds from the first request, per completed story
    failed_events: int  # task.derivation.failed events, retried or not
    gave_up: int  # stories whose failed event said requires_manual_review
    plans: tuple[JobPlan, ...]  # the executor's jobs, times from the first request
    seconds: float  # the phase: from the first request until settled or timed out
    window: tuple[Point, ...] = ()  # the pipeline's window over time, if it has one

    @property
    def last_completed(self) -> float | None:
        return max(self.completed_at, default=None)

    @property
    def unsettled(self) -> int:
        return self.stories - len(self.completed_at) - self.gave_up

    @property
    def timeouts(self) -> int:
        return sum(plan.timed_out for plan in self.plans)


@dataclass
class _Outcomes:
    """What the phase has heard so far, per story."""

    completed_at: dict[str, float]
    gave_up: set[str]
    failed_events: int = 0

    def settled(self, stories: int) -> bool:
        return len(self.completed_at.keys() | self.gave_up) >= stories


async def llm_phase(
    url: str,
    stories: Sequence[tuple[str, str]],
    capacity: LlmCapacity,
    executor_plans: Callable[[], tuple[JobPlan, ...]],
    executor_load: Callable[[], LlmLoad | None],
    timeout: float,
    window: WindowProbe | None = None,
) -> LlmRun:
    """Request every (story id, plan id) at once; gather completed and failed events until all
    are settled or `timeout` passes; the executor's plans and the window over that time."""
    connection = await nats.connect(url)
    outcomes = _Outcomes({}, set())
    settled = asyncio.Event()
    started = time.monotonic()  # set again at the first request; the handlers read it then

    async def on_completed(message: Msg) -> None:
        story = json.loads(message.data).get("story_id")
        outcomes.completed_at.setdefault(story, time.monotonic() - started)
        if outcomes.settled(len(stories)):
            settled.set()

    async def on_failed(message: Msg) -> None:
        event = json.loads(message.data)
        outcomes.failed_events += 1
        if event.get("requires_manual_review"):
            outcomes.gave_up.add(event.get("story_id"))
        if outcomes.settled(len(stories)):
            settled.set()

    window_points: list[Point] = []
    try:
        jetstream = connection.jetstream()
        for subject, handler in (
            (DERIVATION_COMPLETED, on_completed),
            (DERIVATION_FAILED, on_failed),
        ):
            await jetstream.subscribe(
                subject, cb=handler, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
        started = time.monotonic()
        for story_id, plan_id in stories:
            body = json.dumps({"plan_id": plan_id, "story_id": story_id}).encode()
            await jetstream.publish(DERIVATION_REQUESTED, body)
        reported = started
        while not settled.is_set() and time.monotonic() - started < timeout:
            with contextlib.suppress(TimeoutError):  # woken each SAMPLE_SECONDS to sample
                await asyncio.wait_for(settled.wait(), SAMPLE_SECONDS)
            now = time.monotonic()
            if window is not None and (value := window.read()) is not None:
                window_points.append((now - started, value))
            if now - reported >= PROGRESS_SECONDS:
                reported = now
                print(_progress(outcomes, len(stories), executor_load(), now - started), flush=True)
    finally:
        await connection.close()
    return LlmRun(
        capacity=capacity,
        stories=len(stories),
        completed_at=tuple(outcomes.completed_at.values()),
        failed_events=outcomes.failed_events,
        gave_up=len(outcomes.gave_up - outcomes.completed_at.keys()),
        plans=tuple(plan.shifted(started) for plan in executor_plans()),
        seconds=time.monotonic() - started,
        window=tuple(window_points),
    )


def _progress(outcomes: _Outcomes, stories: int, load: LlmLoad | None, elapsed: float) -> str:
    executor = f", executor: {load.describe()}" if load is not None else ""
    return (
        f"  pipeline: {len(outcomes.completed_at)}/{stories} completed, "
        f"{outcomes.failed_events} failed events, {elapsed:.0f} s{executor}"
    )


def floor_formula(capacity: LlmCapacity, stories: int) -> str:
    if capacity.slots is None:
        return f"one round of {capacity.service_seconds:g} s (unlimited slots)"
    return f"ceil({stories} / {capacity.slots}) x {capacity.service_seconds:g} s"


def llm_report(run: LlmRun, picture: Path | None) -> str:
    """The run's figures, one a line; the ratio of the last completed event to the floor."""
    floor = run.capacity.floor_seconds(run.stories)
    last = run.last_completed
    rows = [
        ("stories completed", f"{len(run.completed_at)}/{run.stories}"),
        (
            "failed events",
            f"{run.failed_events} (task.derivation.failed; {run.gave_up} stories gave up)",
        ),
        ("executor timeouts", f"{run.timeouts} of {len(run.plans)} jobs"),
        (
            "peak jobs in flight",
            f"{peak_in_flight(run.plans)} at the executor ({run.capacity.slots_wording})",
        ),
        (
            "last completed event",
            "none" if last is None else f"{last:.1f} s after the first request",
        ),
        ("LLM floor", f"{floor:.1f} s = {floor_formula(run.capacity, run.stories)}"),
        ("last completed / floor", "-" if last is None else f"x{last / floor:.2f}"),
    ]
    if picture is not None:
        rows.append(("picture", f"{picture} (jobs in flight over time)"))
    lines = [f"{label:<24}{value}" for label, value in rows]
    if run.unsettled:
        lines.append(
            f"\nNOT settled: {run.unsettled} of {run.stories} stories "
            "(neither completed nor given up)"
        )
    return "\n".join(lines)


def llm_picture(run: LlmRun) -> bytes:
    """Jobs in flight at the executor over time; its slots; the window when there is one.
    Drawn to the end of the phase: the pipeline's work goes on after the LLM's."""
    steps = in_flight_steps(run.plans)
    end = (run.seconds, steps[-1][1] if steps else 0.0)
    series = [Series("jobs in flight at the executor", ((0.0, 0.0), *steps, end), BLUE)]
    if run.capacity.slots is not None:
        series.append(Series("llm slots", ((0.0, float(run.capacity.slots)),), GREY))
    if run.window:
        series.append(Series("window (td_llm_window)", run.window, ORANGE))
    title = f"{run.stories} stories, llm {run.capacity.describe()}"
    return step_chart(title, series, "seconds since the first request", "jobs")


def conclude(run: LlmRun, picture: Path) -> int:
    """Write the picture, print the report; 0 when every story completed."""
    picture.write_bytes(llm_picture(run))
    print(llm_report(run, picture))
    return 0 if len(run.completed_at) == run.stories else 1
