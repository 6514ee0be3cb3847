"""The sandbox executor's LLM back-end for tests: canned answers per story from files, with
markers for slow, failing and lost jobs.
"""

from __future__ import annotations

import time
from pathlib import Path

from td_pipeline.sandbox.llm import LlmAnswer, LlmFailure, LlmRequest, UnpublishedLlmFailure
from td_pipeline.sandbox.offline_planner import OfflinePlanner


class ReplayLlm:
    """Answers from `<directory>/<story_id>.txt`. First-line markers: `@never` (the job is
    lost), `@fail <message>` (every time), `@fail-once <message>` (the story's first job
    fails, later ones answer with the following lines), `@fail-unpublished-once <message>`
    (the same, but the failure message is lost: only the job's status tells), `@delay
    <seconds>` (then the answer on the following lines). A story without a file gets the
    offline planner's answer."""

    vllm_url = "sandbox://replay"
    vllm_model = "replay"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._fallback = OfflinePlanner()
        self._failed_once: set[str] = set()

    def answer(self, request: LlmRequest) -> LlmAnswer | None:
        path = self._directory / f"{request.story_id}.txt"
        if not path.is_file():
            return self._fallback.answer(request)
        text = path.read_text()
        first, _, rest = text.partition("\n")
        marker = first.strip()
        if marker == "@never":
            return None
        for once, failure in (
            ("@fail-unpublished-once", UnpublishedLlmFailure),
            ("@fail-once", LlmFailure),
        ):
            if marker.startswith(once):
                if request.story_id in self._failed_once:
                    if not rest.strip():  # no answer given: the offline planner's
                        return self._fallback.answer(request)
                    return LlmAnswer(content=rest, model=f"replay:{path.name}", tokens=1)
                self._failed_once.add(request.story_id)
                raise failure(marker.removeprefix(once).strip() or "replayed failure")
        if marker.startswith("@fail"):
            raise LlmFailure(marker.removeprefix("@fail").strip() or "replayed failure")
        if marker.startswith("@delay"):
            time.sleep(float(marker.removeprefix("@delay").strip() or 0))
            text = rest
        return LlmAnswer(content=text, model=f"replay:{path.name}", tokens=len(text.split()))
