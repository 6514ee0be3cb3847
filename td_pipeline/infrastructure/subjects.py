"""NATS subjects and the default streams of contracts.md §1: the wire contract shared by the
pipeline and the sandbox fleet (like the payload models)."""

from __future__ import annotations

from dataclasses import dataclass

DERIVATION_REQUESTED = "task.derivation.requested"
DERIVATION_COMPLETED = "task.derivation.completed"
DERIVATION_FAILED = "task.derivation.failed"
AGENT_RESPONSE_COMPLETED = "agent.response.completed"
AGENT_RESPONSE_FAILED = "agent.response.failed"

DUPLICATE_WINDOW_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " .*>"):
            raise ValueError(f"stream name {self.name!r} is not a valid JetStream name")
        if not self.subjects:
            raise ValueError(f"stream {self.name} needs at least one subject")


DERIVATION_STREAM = StreamSpec("task_derivation", ("task.derivation.>",))
AGENT_RESPONSES_STREAM = StreamSpec("AGENT_RESPONSES", ("agent.response.>",))
FLEET_STREAMS = (DERIVATION_STREAM, AGENT_RESPONSES_STREAM)
# The durable consumers td-pipeline creates (contracts §1; names are configuration).
REQUEST_DURABLE = "task-derivation-request-consumer"
RESULT_DURABLE = "task-derivation-result-consumer"
