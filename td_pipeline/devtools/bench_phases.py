"""The phases of `td-pipeline bench e2e` (`bench`): a request per item published at once, each
item timed from its request to its final event (with `--burst`, a progress line while it runs),
and the table that compares the pipeline's phase with the engine floor's."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nats
from nats.js.api import DeliverPolicy

from td_pipeline.devtools.process_memory import PeakMemory

PROGRESS_SECONDS = 10.0  # --burst: a progress line this often
MIB = 2**20

Progress = Callable[[str, int, int, float], None]  # phase, done, expected, seconds elapsed


def quantile(values: Sequence[float], q: float) -> float:
    """The value at rank q of the sorted values (the nearest rank, no interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    latencies: tuple[float, ...]  # seconds from request to final event, per item
    wall_seconds: float  # first request to last event
    expected: int
    peak_rss_bytes: int | None = None  # --burst: the stack's highest summed RSS in the phase

    def quantile(self, q: float) -> float:
        return quantile(self.latencies, q)

    @property
    def missing(self) -> int:
        return self.expected - len(self.latencies)

    @property
    def per_minute(self) -> float:
        return 60 * len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0


def progress_line(memory: PeakMemory) -> Progress:
    def line(name: str, done: int, expected: int, elapsed: float) -> None:
        print(
            f"  {name}: {done}/{expected} completed, {elapsed:.0f} s, "
            f"peak {memory.peak_so_far() / MIB:.0f} MiB",
            flush=True,
        )

    return line


async def timed_phase(
    name: str,
    url: str,
    items: list[tuple[str, str]],
    request: Callable[[tuple[str, str]], tuple[str, str]],
    final_subject: str,
    key: str,
    timeout: float,
    progress: Progress | None = None,
) -> Phase:
    """Publish a request per item at once, then time each item's final event. With
    `progress`, a call every PROGRESS_SECONDS and at the end; else a line every 10 items."""
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        finals = await jetstream.subscribe(
            final_subject, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        requested: dict[str, float] = {}
        started = time.monotonic()
        for item in items:
            subject, body = request(item)
            await jetstream.publish(subject, body.encode())
            requested[item[0]] = time.monotonic()
        latencies: dict[str, float] = {}
        last = reported = started
        while len(latencies) < len(items) and time.monotonic() - started < timeout:
            if progress is not None and time.monotonic() - reported >= PROGRESS_SECONDS:
                reported = time.monotonic()
                progress(name, len(latencies), len(items), reported - started)
            try:
                message = await finals.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            item_key = json.loads(message.data).get(key)
            if item_key in requested and item_key not in latencies:
                last = time.monotonic()
                latencies[item_key] = last - requested[item_key]
                if progress is None and len(latencies) % 10 == 0:
                    print(f"  {name}: {len(latencies)}/{len(items)}", flush=True)
        if progress is not None:
            progress(name, len(latencies), len(items), time.monotonic() - started)
        return Phase(name, tuple(latencies.values()), last - started, len(items))
    finally:
        await connection.close()


def _peak_mib(phase: Phase) -> float:
    return (phase.peak_rss_bytes or 0) / MIB


def report(pipeline: Phase, floor: Phase, burst: bool = False) -> str:
    """The table of both phases and their ratios; with `burst`, each phase's peak memory and
    what did not complete. If the phases ran different numbers of items, the ratio line names
    both and leaves out p50 and p95 (in a burst, they grow with its size)."""
    phases = (pipeline, floor)
    memory = burst and all(phase.peak_rss_bytes is not None for phase in phases)
    width = max(3, *(len(str(phase.expected)) for phase in phases))  # of "done"'s halves
    lines = [
        f"{'':14}{'done':>{2 * width + 2}}{'p50 s':>9}{'p95 s':>9}{'per min':>9}"
        + (f"{'peak MiB':>10}" if memory else "")
    ]
    for phase in phases:
        lines.append(
            f"{phase.name:14}{len(phase.latencies):>{width + 1}}/{phase.expected:<{width}}"
            f"{phase.quantile(0.5):>9.1f}{phase.quantile(0.95):>9.1f}{phase.per_minute:>9.1f}"
            + (f"{_peak_mib(phase):>10.0f}" if memory else "")
        )
    if floor.latencies and pipeline.latencies:
        peaks = f", peak memory x{_peak_mib(pipeline) / _peak_mib(floor):.2f}" if memory else ""
        throughput = f"throughput x{pipeline.per_minute / floor.per_minute:.2f}{peaks}"
        if pipeline.expected == floor.expected:
            lines.append(
                f"\npipeline / engine floor: "
                f"p50 x{pipeline.quantile(0.5) / floor.quantile(0.5):.2f}, "
                f"p95 x{pipeline.quantile(0.95) / floor.quantile(0.95):.2f}, {throughput} "
                f"(median of all: {statistics.median(pipeline.latencies):.1f}s vs "
                f"{statistics.median(floor.latencies):.1f}s)"
            )
        else:
            lines.append(
                f"\npipeline {pipeline.expected} stories / engine floor {floor.expected} items: "
                f"{throughput} (p50 and p95 grow with a burst's size: compared at equal sizes)"
            )
    if burst:
        missing = [f"{p.name} {p.missing} of {p.expected}" for p in phases if p.missing]
        lines.append("\nNOT completed: " + ", ".join(missing) if missing else "\nall completed")
    return "\n".join(lines)
