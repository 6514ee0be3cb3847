"""The generated descriptors reproduce contracts.md §2: packages, services, messages, fields.

The expected table is written out from the contract, independently of the .proto files, so
that an edit to a .proto that would break a fleet peer fails here.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from td_pipeline.gen.fleet.context.v1 import context_pb2
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2

# (number, name, type) with type a scalar name, a message name, "repeated <type>" or "map".
Field = tuple[int, str, str]

CONTRACT: dict[str, dict[str, list[Field]]] = {
    "fleet.task_derivation.v1": {
        "GetPlanContextRequest": [(1, "plan_id", "string")],
        "GetPlanContextResponse": [(1, "plan_context", "PlanContext")],
        "CreateTasksRequest": [(1, "commands", "repeated TaskCreationCommand")],
        "CreateTasksResponse": [(1, "task_ids", "repeated string")],
        "ListStoryTasksRequest": [(1, "story_id", "string")],
        "ListStoryTasksResponse": [(1, "tasks", "repeated TaskSummary")],
        "SaveTaskDependenciesRequest": [
            (1, "plan_id", "string"),
            (2, "story_id", "string"),
            (3, "edges", "repeated DependencyEdge"),
        ],
        "SaveTaskDependenciesResponse": [(1, "success", "bool")],
        "PlanContext": [
            (1, "plan_id", "string"),
            (2, "story_id", "string"),
            (3, "title", "string"),
            (4, "description", "string"),
            (5, "acceptance_criteria", "repeated string"),
            (6, "technical_notes", "string"),
            (7, "roles", "repeated string"),
        ],
        "TaskCreationCommand": [
            (1, "plan_id", "string"),
            (2, "story_id", "string"),
            (3, "title", "string"),
            (4, "description", "string"),
            (5, "estimated_hours", "int32"),
            (6, "priority", "int32"),
            (7, "assigned_role", "string"),
        ],
        "TaskSummary": [
            (1, "task_id", "string"),
            (2, "title", "string"),
            (3, "priority", "int32"),
            (4, "assigned_role", "string"),
        ],
        "DependencyEdge": [
            (1, "from_task_id", "string"),
            (2, "to_task_id", "string"),
            (3, "reason", "string"),
        ],
    },
    "fleet.context.v1": {
        "GetContextRequest": [
            (1, "story_id", "string"),
            (2, "role", "string"),
            (3, "phase", "string"),
            (4, "subtask_id", "string"),
            (5, "token_budget", "int32"),
        ],
        "GetContextResponse": [
            (1, "context", "string"),
            (2, "token_count", "int32"),
            (3, "scopes", "repeated string"),
            (4, "version", "string"),
            (5, "blocks", "PromptBlocks"),
        ],
        "PromptBlocks": [(1, "system", "string"), (2, "context", "string"), (3, "tools", "string")],
    },
    "fleet.ray_executor.v1": {
        "ExecuteDeliberationRequest": [
            (1, "task_id", "string"),
            (2, "task_description", "string"),
            (3, "role", "string"),
            (4, "constraints", "TaskConstraints"),
            (5, "agents", "repeated Agent"),
            (6, "vllm_url", "string"),
            (7, "vllm_model", "string"),
        ],
        "TaskConstraints": [
            (1, "story_id", "string"),
            (2, "plan_id", "string"),
            (3, "timeout_seconds", "int32"),
            (4, "max_retries", "int32"),
            (5, "metadata", "map"),
        ],
        "Agent": [
            (1, "id", "string"),
            (2, "role", "string"),
            (3, "model", "string"),
            (4, "prompt_template", "string"),
        ],
        "ExecuteDeliberationResponse": [
            (1, "task_id", "string"),
            (2, "deliberation_id", "string"),
            (3, "status", "string"),
            (4, "message", "string"),
        ],
        "GetDeliberationStatusRequest": [(1, "deliberation_id", "string")],
        "GetDeliberationStatusResponse": [
            (1, "status", "string"),
            (2, "result", "DeliberationResult"),
            (3, "error_message", "string"),
        ],
        "DeliberationResult": [
            (1, "agent_id", "string"),
            (2, "proposal", "string"),
            (3, "reasoning", "string"),
            (4, "score", "float"),
            (5, "metadata", "map"),
        ],
    },
}

SERVICES: dict[str, tuple[FileDescriptor, str, list[str]]] = {
    "fleet.task_derivation.v1": (
        task_derivation_pb2.DESCRIPTOR,
        "TaskDerivationPlanningService",
        ["GetPlanContext", "CreateTasks", "ListStoryTasks", "SaveTaskDependencies"],
    ),
    "fleet.context.v1": (context_pb2.DESCRIPTOR, "ContextService", ["GetContext"]),
    "fleet.ray_executor.v1": (
        ray_executor_pb2.DESCRIPTOR,
        "RayExecutorService",
        ["ExecuteDeliberation", "GetDeliberationStatus"],
    ),
}

SCALAR_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_FLOAT: "float",
}


def _describe(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields
        assert (SCALAR_NAMES[key.type], SCALAR_NAMES[value.type]) == ("string", "string")
        return "map"
    kind = field.message_type.name if field.message_type else SCALAR_NAMES[field.type]
    repeated = field.is_repeated
    return f"repeated {kind}" if repeated else kind


def _fields(message: Descriptor) -> list[Field]:
    return sorted((f.number, f.name, _describe(f)) for f in message.fields)


@pytest.mark.parametrize("package", sorted(CONTRACT))
def test_messages_match_the_contract(package: str) -> None:
    file_descriptor, _, _ = SERVICES[package]
    assert file_descriptor.package == package
    for name, expected in CONTRACT[package].items():
        message = file_descriptor.message_types_by_name.get(name)
        assert message is not None, f"{package}.{name} is missing"
        assert _fields(message) == sorted(expected), f"{package}.{name} differs from contract"


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_services_match_the_contract(package: str) -> None:
    file_descriptor, service_name, rpcs = SERVICES[package]
    service = file_descriptor.services_by_name[service_name]
    assert service.full_name == f"{package}.{service_name}"
    assert [method.name for method in service.methods] == rpcs
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
        assert not method.client_streaming and not method.server_streaming


def test_no_message_beyond_the_contract() -> None:
    for package, (file_descriptor, _, _) in SERVICES.items():
        assert set(file_descriptor.message_types_by_name) == set(CONTRACT[package])
