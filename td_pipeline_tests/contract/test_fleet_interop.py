"""A fleet peer that builds the protos from its own copy, in its own layout, talks to us.

The peer copies protos/ into the fleet's layout (`fleet/<package>/v1/*.proto`), compiles it in
a separate process (its descriptors would clash with ours in one process) and serves Planning
and the Ray Executor over a real socket; our generated stubs call it and it checks what it got.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2, ray_executor_pb2_grpc
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2, task_derivation_pb2_grpc
from td_pipeline.sandbox.planning import serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories

PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos" / "td_pipeline" / "gen"

FLEET_PEER = textwrap.dedent(
    """
    import sys
    from concurrent import futures

    import grpc
    from grpc_tools import protoc

    root = sys.argv[1]
    for proto in ("fleet/task_derivation/v1/task_derivation.proto",
                  "fleet/ray_executor/v1/ray_executor.proto"):
        assert protoc.main(["protoc", f"-I{root}", f"--python_out={root}",
                            f"--grpc_python_out={root}", proto]) == 0
    sys.path.insert(0, root)
    from fleet.task_derivation.v1 import task_derivation_pb2 as pb, task_derivation_pb2_grpc as rpc
    from fleet.ray_executor.v1 import ray_executor_pb2 as rpb, ray_executor_pb2_grpc as rrpc

    class Planning(rpc.TaskDerivationPlanningServiceServicer):
        def GetPlanContext(self, request, context):
            return pb.GetPlanContextResponse(plan_context=pb.PlanContext(
                plan_id=request.plan_id, story_id="S-1", title="Checkout",
                description="Pay by card", acceptance_criteria=["a", "b"],
                technical_notes="PCI", roles=["DEVELOPER", "QA"]))

        def SaveTaskDependencies(self, request, context):
            edge = request.edges[0]
            ok = (request.plan_id, request.story_id, edge.from_task_id, edge.to_task_id,
                  edge.reason) == ("P-1", "S-1", "T-b", "T-a", "needs a")
            return pb.SaveTaskDependenciesResponse(success=ok)

    class Executor(rrpc.RayExecutorServiceServicer):
        def ExecuteDeliberation(self, request, context):
            c = request.constraints
            seen = ",".join([request.task_id, request.role, c.story_id, c.plan_id,
                             str(c.timeout_seconds), c.metadata["task_type"],
                             request.agents[0].model, request.vllm_model])
            return rpb.ExecuteDeliberationResponse(task_id=request.task_id,
                                                   deliberation_id="d-1", status="submitted",
                                                   message=seen)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc.add_TaskDerivationPlanningServiceServicer_to_server(Planning(), server)
    rrpc.add_RayExecutorServiceServicer_to_server(Executor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    """
)


@pytest.fixture(scope="module")
def fleet_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    root = tmp_path_factory.mktemp("fleet_protos")
    shutil.copytree(PROTO_ROOT / "fleet", root / "fleet")
    peer = subprocess.Popen(
        [sys.executable, "-c", FLEET_PEER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        port = int(peer.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait(timeout=10)


def test_planning_peer_understands_our_messages(fleet_peer: grpc.Channel) -> None:
    planning = task_derivation_pb2_grpc.TaskDerivationPlanningServiceStub(fleet_peer)

    plan = planning.GetPlanContext(
        task_derivation_pb2.GetPlanContextRequest(plan_id="P-1"), timeout=5
    ).plan_context
    saved = planning.SaveTaskDependencies(
        task_derivation_pb2.SaveTaskDependenciesRequest(
            plan_id="P-1",
            story_id="S-1",
            edges=[
                task_derivation_pb2.DependencyEdge(
                    from_task_id="T-b", to_task_id="T-a", reason="needs a"
                )
            ],
        ),
        timeout=5,
    )

    assert (plan.plan_id, plan.story_id, plan.title, plan.technical_notes) == (
        "P-1",
        "S-1",
        "Checkout",
        "PCI",
    )
    assert list(plan.acceptance_criteria) == ["a", "b"]
    assert list(plan.roles) == ["DEVELOPER", "QA"]
    assert saved.success


def test_executor_peer_understands_our_submission(fleet_peer: grpc.Channel) -> None:
    executor = ray_executor_pb2_grpc.RayExecutorServiceStub(fleet_peer)

    answer = executor.ExecuteDeliberation(
        ray_executor_pb2.ExecuteDeliberationRequest(
            task_id="derive-P-1",
            task_description="prompt",
            role="DEVELOPER",
            constraints=ray_executor_pb2.TaskConstraints(
                story_id="S-1",
                plan_id="P-1",
                timeout_seconds=600,
                metadata={"task_type": "TASK_DERIVATION", "story_id": "S-1"},
            ),
            agents=[ray_executor_pb2.Agent(id="a-1", role="DEVELOPER", model="m")],
            vllm_model="qwen",
        ),
        timeout=5,
    )

    assert (answer.deliberation_id, answer.status) == ("d-1", "submitted")
    assert answer.message == "derive-P-1,DEVELOPER,S-1,P-1,600,TASK_DERIVATION,m,qwen"


FLEET_CLIENT = textwrap.dedent(
    """
    import sys

    import grpc
    from grpc_tools import protoc

    root, address = sys.argv[1], sys.argv[2]
    proto = "fleet/task_derivation/v1/task_derivation.proto"
    assert protoc.main(["protoc", f"-I{root}", f"--python_out={root}",
                        f"--grpc_python_out={root}", proto]) == 0
    sys.path.insert(0, root)
    from fleet.task_derivation.v1 import task_derivation_pb2 as pb, task_derivation_pb2_grpc as rpc

    planning = rpc.TaskDerivationPlanningServiceStub(grpc.insecure_channel(address))
    plan = planning.GetPlanContext(pb.GetPlanContextRequest(plan_id="PLAN-PAY-1"), timeout=5)
    created = planning.CreateTasks(pb.CreateTasksRequest(commands=[pb.TaskCreationCommand(
        plan_id="PLAN-PAY-1", story_id=plan.plan_context.story_id, title="From the fleet",
        estimated_hours=2, priority=1, assigned_role="QA")]), timeout=5)
    listed = planning.ListStoryTasks(
        pb.ListStoryTasksRequest(story_id=plan.plan_context.story_id), timeout=5)
    print(plan.plan_context.story_id, len(plan.plan_context.acceptance_criteria),
          created.task_ids[0] == listed.tasks[0].task_id, listed.tasks[0].assigned_role)
    """
)


def test_a_fleet_client_talks_to_the_sandbox_planning(tmp_path: Path) -> None:
    shutil.copytree(PROTO_ROOT / "fleet", tmp_path / "fleet")
    store = PlanningStore()
    store.seed(load_sample_stories())
    running = serve_planning(store)
    try:
        result = subprocess.run(
            [sys.executable, "-c", FLEET_CLIENT, str(tmp_path), running.address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        running.stop()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["STORY-REFUNDS", "4", "True", "QA"]
