"""Context stand-in: `ContextService.GetContext`, role- and phase-aware text for a story.

The text is built from the same store as Planning (decisions, constraints, related work), so
what a role is told can be traced to the seed data in the tests and the demo."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc

from td_pipeline.gen.fleet.context.v1 import context_pb2 as pb
from td_pipeline.gen.fleet.context.v1 import context_pb2_grpc as pb_grpc
from td_pipeline.sandbox.grpc_server import RunningServer, ServerTls, start_grpc_server
from td_pipeline.sandbox.planning_store import PlanningStore, SampleStory

# Which parts of a story's context each role is told; any other role gets the default.
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "DEVELOPER": ("decisions", "constraints", "technical_notes", "related"),
    "QA": ("acceptance_criteria", "constraints", "related"),
    "SECURITY": ("constraints", "decisions"),
    "DEVOPS": ("constraints", "technical_notes"),
}
DEFAULT_SCOPES = ("decisions", "constraints")
PHASES = ("PLAN", "EXECUTE", "REVIEW")


def _section(story: SampleStory, scope: str) -> list[str]:
    if scope == "acceptance_criteria":
        return [f"Must verify: {criterion}" for criterion in story.acceptance_criteria]
    if scope == "technical_notes":
        return [story.technical_notes]
    labels = {"decisions": "Decision", "constraints": "Constraint", "related": "Related work"}
    return [f"{labels[scope]}: {item}" for item in story.context.get(scope, [])]


def build_context(story: SampleStory, role: str, phase: str) -> tuple[str, tuple[str, ...]]:
    scopes = ROLE_SCOPES.get(role, DEFAULT_SCOPES)
    if phase != "PLAN":
        # Outside planning, related work is noise; the task at hand is what matters.
        scopes = tuple(scope for scope in scopes if scope != "related")
    lines = [f"Context for {role} on story {story.story_id} ({phase}):"]
    for scope in scopes:
        lines.extend(f"- {line}" for line in _section(story, scope))
    return "\n".join(lines), scopes


def _within_budget(text: str, token_budget: int) -> str:
    # One token per word is close enough for a stand-in; the real service counts properly.
    words = text.split(" ")
    return (
        text if token_budget <= 0 or len(words) <= token_budget else " ".join(words[:token_budget])
    )


class ContextServicer(pb_grpc.ContextServiceServicer):
    def __init__(self, store: PlanningStore) -> None:
        self._store = store

    def GetContext(
        self, request: pb.GetContextRequest, context: grpc.ServicerContext
    ) -> pb.GetContextResponse:
        if not request.story_id.strip() or not request.role.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "story_id and role are required")
        phase = request.phase.strip().upper() or "PLAN"
        if phase not in PHASES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown phase {request.phase!r}")
        story = self._store.story(request.story_id)
        if story is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"story {request.story_id} not found")
        role = request.role.strip().upper()
        text, scopes = build_context(story, role, phase)
        text = _within_budget(text, request.token_budget)
        return pb.GetContextResponse(
            context=text,
            token_count=len(text.split()),
            scopes=scopes,
            version=hashlib.sha256(text.encode()).hexdigest()[:12],
            blocks=pb.PromptBlocks(
                system=f"You are the {role} of the team working on {story.title}.",
                context=text,
                tools="",
            ),
        )


def serve_context(
    store: PlanningStore, host: str = "127.0.0.1", port: int = 0, tls: ServerTls | None = None
) -> RunningServer:
    servicer = ContextServicer(store)

    def register(server: Any) -> None:
        pb_grpc.add_ContextServiceServicer_to_server(servicer, server)

    service = pb.DESCRIPTOR.services_by_name["ContextService"].full_name
    return start_grpc_server([register], [service], host=host, port=port, tls=tls)
