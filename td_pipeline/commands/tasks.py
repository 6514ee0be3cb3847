"""`td-pipeline tasks --story S`: the tasks Planning holds for a story and, when the state dir
holds the sandbox's Planning store, their dependencies (ListStoryTasks has none)."""

from __future__ import annotations

import argparse

import grpc

from td_pipeline.commands.fleet_access import EXIT_OK, Unreachable, address, fleet_command
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as planning_pb2
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as planning_grpc


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tasks = fleet_command(subcommands, "tasks", show_tasks)
    tasks.add_argument("--story", required=True)
    tasks.add_argument("--planning-address")


def show_tasks(args: argparse.Namespace) -> int:
    planning_address = address(args, args.planning_address, "PLANNING_SERVICE_ADDRESS")
    with grpc.insecure_channel(planning_address) as channel:
        planning = planning_grpc.TaskDerivationPlanningServiceStub(channel)
        try:
            answer = planning.ListStoryTasks(
                planning_pb2.ListStoryTasksRequest(story_id=args.story), timeout=5
            )
        except grpc.RpcError as error:
            raise Unreachable(f"Planning at {planning_address}: {error.code().name}") from error
    if not answer.tasks:
        print(f"Planning holds no task for {args.story}")
        return EXIT_OK
    print(f"{len(answer.tasks)} task(s) for {args.story}:")
    for task in answer.tasks:
        print(f"  {task.task_id}  [{task.assigned_role}] p{task.priority}  {task.title}")
    titles = {task.task_id: task.title for task in answer.tasks}
    print_sandbox_dependencies(args, titles)
    return EXIT_OK


def print_sandbox_dependencies(args: argparse.Namespace, titles: dict[str, str]) -> None:
    """The dependencies in the sandbox's store, when the state dir has one (a real fleet's
    Planning does not list them)."""
    if not args.state_dir.is_dir():
        return
    from td_pipeline.sandbox.state_dir import STORE_FILE_NAME

    store_file = args.state_dir / STORE_FILE_NAME
    if not store_file.is_file():
        return
    from td_pipeline.sandbox.planning_store import PlanningStore

    dependencies = PlanningStore(store_file).dependencies(args.story)
    print(f"{len(dependencies)} dependenc{'y' if len(dependencies) == 1 else 'ies'}:")
    for edge in dependencies:
        print(
            f"  {titles.get(edge.from_task_id, edge.from_task_id)}"
            f"  needs  {titles.get(edge.to_task_id, edge.to_task_id)}"
        )
