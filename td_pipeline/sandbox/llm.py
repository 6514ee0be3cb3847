"""What the sandbox executor asks of an LLM back-end: the request, the answer, the failures and
the protocol. The back-ends, one module each:

- `offline_planner.OfflinePlanner` (default): a deterministic planner, no LLM.
- `openai_llm.OpenAICompatibleLlm`: any /v1/chat/completions endpoint.
- `replay_llm.ReplayLlm`: canned answers per story from files, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LlmRequest:
    prompt: str
    role: str
    story_id: str
    model: str = ""  # the request's vllm_model, if any


@dataclass(frozen=True, slots=True)
class LlmAnswer:
    content: str
    model: str
    tokens: int


class LlmFailure(Exception):
    """The LLM could not answer; published as `agent.response.failed`."""


class UnpublishedLlmFailure(LlmFailure):
    """The LLM failed and the executor's failure message never reached NATS: only
    GetDeliberationStatus tells (`completed` with an empty proposal)."""


class LlmBackend(Protocol):
    """An LLM for the executor stand-in. `vllm_url` / `vllm_model` are what td-pipeline is
    told to send (VLLM_URL, VLLM_MODEL): the real executor refuses empty ones."""

    @property
    def vllm_url(self) -> str: ...

    @property
    def vllm_model(self) -> str: ...

    def answer(self, request: LlmRequest) -> LlmAnswer | None:
        """The answer, or None for a job that never answers (a lost job, for tests)."""
        ...
