"""A story's step, as an asset of its partition's run or inside a batched run: what it made,
how it fails (retryable: the retry schedule tries again; final: a person looks), and riding
out a peer's short outage inside the step first."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dagster as dg

from td_pipeline.application.ports import NotFound, PortError, Rejected
from td_pipeline.application.retries import retry_transient
from td_pipeline.orchestration.attempts import RETRYABLE
from td_pipeline.orchestration.resources import DerivationSettings

T = TypeVar("T")

StepContext = dg.AssetExecutionContext | dg.OpExecutionContext  # a story's run, or a batch


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """What one step made for one story, and the metadata its materialization shows."""

    value: T
    metadata: dict[str, Any]


def final_failure(description: str) -> dg.Failure:
    """A failure no retry can fix: the failed event asks for manual review at once."""
    return dg.Failure(description=description, metadata={RETRYABLE: False})


def retryable_failure(description: str) -> dg.Failure:
    return dg.Failure(description=description, metadata={RETRYABLE: True})


def peer_failure(error: PortError) -> dg.Failure:
    # NotFound / Rejected cannot be fixed by a retry; Unavailable outlived the step's retries.
    if isinstance(error, NotFound | Rejected):
        return final_failure(str(error))
    return retryable_failure(str(error))


def riding_out_outages(
    context: StepContext,
    settings: DerivationSettings,
    call: Callable[[], T],
) -> T:
    """UNAVAILABLE / DEADLINE_EXCEEDED are retried with backoff inside the step."""
    return retry_transient(
        call,
        settings.transient_retry_seconds,
        on_retry=lambda error, delay: context.log.warning(f"{error}; retrying in {delay:.1f}s"),
    )
