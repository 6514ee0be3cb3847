from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from td_pipeline.gen.fleet.context.v1 import context_pb2 as pb
from td_pipeline.gen.fleet.context.v1 import context_pb2_grpc as pb_grpc
from td_pipeline.sandbox.context import serve_context
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories


@pytest.fixture(scope="module")
def service() -> Iterator[pb_grpc.ContextServiceStub]:
    store = PlanningStore()
    store.seed(load_sample_stories())
    running = serve_context(store)
    try:
        with grpc.insecure_channel(running.address) as channel:
            yield pb_grpc.ContextServiceStub(channel)
    finally:
        running.stop()


def ask(service: pb_grpc.ContextServiceStub, **fields: object) -> pb.GetContextResponse:
    request = pb.GetContextRequest(**{"story_id": "STORY-REFUNDS", "phase": "PLAN", **fields})
    return service.GetContext(request, timeout=5)


def test_each_role_is_told_its_own_context(service: pb_grpc.ContextServiceStub) -> None:
    developer = ask(service, role="DEVELOPER")
    qa = ask(service, role="qa")

    assert "Decision: Refund state lives in the ledger" in developer.context
    assert "idempotency keys" in developer.context
    assert "Must verify: An agent can refund the full captured amount" in qa.context
    assert "Decision:" not in qa.context
    assert list(developer.scopes) == ["decisions", "constraints", "technical_notes", "related"]
    assert developer.token_count == len(developer.context.split())
    assert developer.version != qa.version
    assert developer.blocks.context == developer.context


def test_phase_changes_what_is_said(service: pb_grpc.ContextServiceStub) -> None:
    assert "Related work" in ask(service, role="DEVELOPER").context
    assert "Related work" not in ask(service, role="DEVELOPER", phase="EXECUTE").context


def test_token_budget_truncates(service: pb_grpc.ContextServiceStub) -> None:
    assert ask(service, role="DEVELOPER", token_budget=5).token_count <= 5


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"story_id": "NOPE", "role": "QA"}, grpc.StatusCode.NOT_FOUND),
        ({"role": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"role": "QA", "phase": "DREAM"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_errors(
    service: pb_grpc.ContextServiceStub, fields: dict[str, object], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        ask(service, **fields)
    assert raised.value.code() == code  # type: ignore[attr-defined]
