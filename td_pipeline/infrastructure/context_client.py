"""The Context adapter: `ContextPort` over `ContextService.GetContext`."""

from __future__ import annotations

from td_pipeline.domain.prompt import RoleContext
from td_pipeline.domain.values import Role, StoryId
from td_pipeline.gen.fleet.context.v1 import context_pb2 as pb
from td_pipeline.gen.fleet.context.v1 import context_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.grpc_channel import ChannelSettings, LazyChannel, call

SERVICE = pb.DESCRIPTOR.services_by_name["ContextService"].full_name


class GrpcContextClient:
    def __init__(self, settings: ChannelSettings, token_budget: int = 0) -> None:
        self._settings = settings
        self._token_budget = token_budget  # 0 lets the service decide
        self._channel = LazyChannel(settings, SERVICE, ("GetContext",))

    def get_context(self, story_id: StoryId, role: Role, phase: str = "PLAN") -> RoleContext:
        request = pb.GetContextRequest(
            story_id=story_id.value, role=role.value, phase=phase, token_budget=self._token_budget
        )
        stub = pb_grpc.ContextServiceStub(self._channel.get())
        answer = call(
            "GetContext", self._settings, lambda timeout: stub.GetContext(request, timeout=timeout)
        )
        return RoleContext(role=role, text=answer.context)

    def close(self) -> None:
        self._channel.close()
