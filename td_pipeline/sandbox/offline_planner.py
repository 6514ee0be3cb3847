"""The sandbox executor's default LLM back-end: a deterministic planner that reads the prompt's
sections and answers in the JSON format the prompt asks for. Its model name says no LLM was
used.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

from td_pipeline.sandbox.llm import LlmAnswer, LlmRequest

OFFLINE_MODEL = "offline-planner (no LLM)"


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
