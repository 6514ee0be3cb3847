"""The sandbox executor's LLM back-ends.

- `OfflinePlanner` (default): a deterministic planner that reads the prompt's sections and
  answers in the JSON format the prompt asks for. Its model name says no LLM was used.
- `OpenAICompatibleLlm`: any /v1/chat/completions endpoint (vLLM, Ollama, llama.cpp server).
- `ReplayLlm`: canned answers per story from files, with markers for slow, failing and lost
  jobs, for tests.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

OFFLINE_MODEL = "offline-planner (no LLM)"
API_KEY_ENV = "SANDBOX_LLM_API_KEY"


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


# --- offline planner --------------------------------------------------------------------------


def _section(prompt: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", prompt, re.DOTALL)
    return html.unescape(match.group(1)).strip() if match else None


@dataclass(frozen=True, slots=True)
class PromptFacts:
    title: str
    criteria: tuple[str, ...]
    roles: tuple[str, ...]
    min_tasks: int
    max_tasks: int


def read_prompt(prompt: str) -> PromptFacts:
    """What the planner needs from td-pipeline's prompt, with fallbacks for other prompts."""
    title = _section(prompt, "story_title") or prompt.strip().splitlines()[0][:80] or "the story"
    criteria_text = _section(prompt, "acceptance_criteria") or ""
    criteria = tuple(
        re.sub(r"^\d+\.\s*", "", line).strip()
        for line in criteria_text.splitlines()
        if re.match(r"^\d+\.", line.strip())
    ) or (f"{title} works as described",)
    roles = tuple(
        line.strip()
        for line in (_section(prompt, "allowed_roles") or "").splitlines()
        if line.strip()
    ) or ("DEVELOPER",)
    count = re.search(r'<task_count min="(\d+)" max="(\d+)"/>', prompt)
    low, high = (int(count.group(1)), int(count.group(2))) if count else (1, 30)
    return PromptFacts(title, criteria, roles, low, high)


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plan_tasks(facts: PromptFacts) -> list[dict[str, Any]]:
    """Design first, an implementation per criterion, verification by QA when allowed, and a
    rollout last; merged when the count range is tight. Deterministic for the same prompt."""
    builder = next((r for r in facts.roles if r != "QA"), facts.roles[0])
    tester = "QA" if "QA" in facts.roles else None
    releaser = "DEVOPS" if "DEVOPS" in facts.roles else builder
    numbers = list(range(1, len(facts.criteria) + 1))
    tasks: list[dict[str, Any]] = []

    def add(
        title: str,
        role: str,
        hours: int,
        priority: int,
        depends: list[str],
        covers: list[int],
        description: str,
    ) -> str:
        key = f"T{len(tasks) + 1}"
        tasks.append(
            {
                "id": key,
                "title": _short(title),
                "description": description,
                "role": role,
                "estimated_hours": hours,
                "priority": priority,
                "depends_on": depends,
                "covers": covers,
            }
        )
        return key

    # Leave room for design and rollout; one verification per criterion only when it fits.
    separate_checks = tester is not None and 2 + 2 * len(numbers) <= facts.max_tasks
    room_for_builds = max(1, facts.max_tasks - 2 - (0 if separate_checks or not tester else 1))
    groups = [numbers[i::room_for_builds] for i in range(min(room_for_builds, len(numbers)))]
    design = add(
        f"Design the approach for {facts.title}",
        builder,
        3,
        1,
        [],
        [],
        "Agree on data model, interfaces and risks before building.",
    )
    builds, checks = [], []
    for group in groups:
        wording = "; ".join(facts.criteria[n - 1] for n in group)
        build = add(
            f"Implement: {wording}",
            builder,
            2 + 2 * len(group),
            2,
            [design],
            group,
            f"Build what acceptance criteria {group} require.",
        )
        builds.append(build)
        if separate_checks and tester:
            checks.append(
                add(
                    f"Verify: {wording}",
                    tester,
                    2,
                    2,
                    [build],
                    group,
                    f"Test acceptance criteria {group} end to end.",
                )
            )
    if tester and not separate_checks:
        checks.append(
            add(
                f"Verify all acceptance criteria of {facts.title}",
                tester,
                2 + len(numbers),
                2,
                builds,
                numbers,
                "End-to-end tests.",
            )
        )
    add(
        f"Roll out {facts.title}",
        releaser,
        2,
        3,
        checks or builds,
        [],
        "Release behind a flag, watch metrics, then remove the flag.",
    )
    while len(tasks) < facts.min_tasks:
        add(
            f"Document {facts.title} (part {len(tasks)})",
            builder,
            1,
            4,
            [tasks[-1]["id"]],
            [],
            "Write the runbook and user-facing notes.",
        )
    return tasks


class OfflinePlanner:
    vllm_url = "sandbox://offline-planner"
    vllm_model = OFFLINE_MODEL

    def answer(self, request: LlmRequest) -> LlmAnswer:
        content = json.dumps({"tasks": plan_tasks(read_prompt(request.prompt))}, indent=2)
        return LlmAnswer(content=content, model=OFFLINE_MODEL, tokens=len(content.split()))


# --- OpenAI-compatible endpoint ---------------------------------------------------------------

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {"type": "object"}}},
    "required": ["tasks"],
}


class OpenAICompatibleLlm:
    """Chat completions over HTTP with the standard library. Asks for a JSON-schema response
    and falls back to a plain JSON object, then to none, for servers that refuse it."""

    def __init__(self, base_url: str, model: str, timeout_seconds: float = 120.0) -> None:
        self.vllm_url, self.vllm_model = base_url, model
        self._url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/v1") else "/v1")
        self._url += "/chat/completions"
        self._model = model
        self._timeout = timeout_seconds

    def answer(self, request: LlmRequest) -> LlmAnswer:
        formats: list[dict[str, Any] | None] = [
            {"type": "json_schema", "json_schema": {"name": "tasks", "schema": ANSWER_SCHEMA}},
            {"type": "json_object"},
            None,
        ]
        last_error = ""
        for response_format in formats:
            body: dict[str, Any] = {
                "model": request.model or self._model,
                "messages": [{"role": "user", "content": request.prompt}],
                "temperature": 0.2,
            }
            if response_format is not None:
                body["response_format"] = response_format
            try:
                reply = self._post(body)
            except urllib.error.HTTPError as error:
                last_error = f"HTTP {error.code} from {self._url}"
                if error.code == 400:
                    continue  # this server does not support that response format
                raise LlmFailure(last_error) from error
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                raise LlmFailure(f"LLM endpoint {self._url} unreachable: {error}") from error
            try:
                content = reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError) as error:
                raise LlmFailure("LLM reply has no choices[0].message.content") from error
            tokens = int(reply.get("usage", {}).get("completion_tokens", 0) or 0)
            return LlmAnswer(
                content=content, model=str(reply.get("model", self._model)), tokens=tokens
            )
        raise LlmFailure(last_error)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if api_key := os.environ.get(API_KEY_ENV):
            headers["Authorization"] = f"Bearer {api_key}"
        http_request = urllib.request.Request(
            self._url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(http_request, timeout=self._timeout) as response:
            reply: dict[str, Any] = json.loads(response.read())
            return reply


# --- replay -----------------------------------------------------------------------------------


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
