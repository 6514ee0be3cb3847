"""`td-pipeline sandbox up` as a user runs it: real processes, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from td_pipeline.cli import main
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.sandbox import nats_server
from td_pipeline.sandbox.offline_planner import OFFLINE_MODEL, OfflinePlanner
from td_pipeline.sandbox.state_dir import read_env_file
from td_pipeline_tests.sandbox.test_executor import STORIES, submission
from td_pipeline_tests.sandbox.test_executor_capacity import collect
from td_pipeline_tests.support import wait_until

CLI = [str(Path(sys.executable).with_name("td-pipeline"))]


def child_pids(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(c) for c in children.read_text().split()} if children.exists() else set()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    return state != "Z"


@contextmanager
def sandbox_up(state_dir: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[str], float]]:
    """`td-pipeline sandbox up` with these flags, once its env file is written; killed after
    the block unless the block stopped it."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*CLI, "sandbox", "up", "--state-dir", str(state_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (state_dir / "sandbox.env").exists() or process.poll() is not None,
            30,
            "sandbox up coming up",
        )
        assert process.poll() is None, process.communicate()
        yield process, time.monotonic() - started
    finally:
        if process.poll() is None:
            # As a user stops it: SIGKILL would leave its NATS server running after the tests.
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], Path, float]]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    with sandbox_up(state_dir) as (process, ready_after):
        yield process, state_dir, ready_after


def test_sandbox_up_serves_quickly_on_loopback(
    sandbox: tuple[subprocess.Popen[str], Path, float],
) -> None:
    _, state_dir, ready_after = sandbox
    environment = read_env_file(state_dir)

    assert ready_after < 5.0, f"sandbox up took {ready_after:.1f}s"
    assert set(environment) == {
        "NATS_URL",
        "PLANNING_SERVICE_ADDRESS",
        "CONTEXT_SERVICE_ADDRESS",
        "RAY_EXECUTOR_ADDRESS",
        "VLLM_URL",
        "VLLM_MODEL",
    }
    assert environment["NATS_URL"].startswith("nats://127.0.0.1:")
    addresses = set(environment) - {"NATS_URL", "VLLM_URL", "VLLM_MODEL"}
    assert all(environment[name].startswith("127.0.0.1:") for name in addresses)
    # The LLM td-pipeline tells the executor to call: the default backend's own.
    assert (environment["VLLM_URL"], environment["VLLM_MODEL"]) == (
        "sandbox://offline-planner",
        OFFLINE_MODEL,
    )
    assert (OfflinePlanner.vllm_url, OfflinePlanner.vllm_model) == (
        "sandbox://offline-planner",
        OFFLINE_MODEL,
    )


def test_the_env_file_can_be_sourced_as_the_readme_says(
    sandbox: tuple[subprocess.Popen[str], Path, float],
) -> None:
    _, state_dir, _ = sandbox
    environment = read_env_file(state_dir)
    script = 'set -a; . "$1/sandbox.env" || exit 3; set +a; env -0'
    sourced = subprocess.run(
        ["bash", "-c", script, "bash", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert sourced.returncode == 0 and sourced.stderr == "", sourced.stderr
    variables = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if "=" in item)
    assert {name: variables.get(name) for name in environment} == environment


def test_interrupt_stops_every_child_process(
    sandbox: tuple[subprocess.Popen[str], Path, float],
) -> None:
    process, state_dir, _ = sandbox
    children = child_pids(process.pid)
    assert children, "sandbox up should run nats-server as a child"

    process.send_signal(signal.SIGINT)
    printed, _ = process.communicate(timeout=15)

    assert process.returncode == 0
    # What `sandbox up` printed, before its closing comments, is what it wrote to the file.
    variables = [line.split("=", 1)[0] for line in printed.splitlines() if "=" in line]
    assert variables == [
        "NATS_URL",
        "PLANNING_SERVICE_ADDRESS",
        "CONTEXT_SERVICE_ADDRESS",
        "RAY_EXECUTOR_ADDRESS",
        "VLLM_URL",
        "VLLM_MODEL",
    ]
    assert "VLLM_URL=sandbox://offline-planner" in printed.splitlines()
    assert f"VLLM_MODEL='{OFFLINE_MODEL}'" in printed.splitlines()  # quoted for the shell
    assert "# llm" not in printed  # no capacity model unless asked: answers at once
    assert not any(alive(pid) for pid in children)
    assert not (state_dir / "sandbox.env").exists()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--llm", "openai"], "--llm openai needs --llm-url"),
        (["--llm-slots", "2"], "--llm-slots needs --llm-seconds"),
        (["--llm-seconds", "-1"], "--llm-seconds must be a number of seconds above 0, not -1"),
        (
            ["--llm", "openai", "--llm-url", "http://127.0.0.1:1", "--llm-seconds", "1"],
            "--llm-seconds plays the LLM's service time: not with --llm openai",
        ),
    ],
)
def test_a_bad_option_is_one_line(
    flags: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["sandbox", "up", *flags, "--state-dir", str(tmp_path / "state")])

    assert exit_code == 1
    assert capsys.readouterr().err == f"td-pipeline: {error}\n"
    assert not (tmp_path / "state").exists()


def test_llm_slots_make_the_executor_serve_one_job_at_a_time_and_time_out_the_rest(
    tmp_path: Path,
) -> None:
    flags = ("--llm-slots", "1", "--llm-seconds", "0.3", "--llm-timeout-seconds", "0.5")
    with sandbox_up(tmp_path / "state", *flags) as (process, _):
        environment = read_env_file(tmp_path / "state")
        derivations = ("d-cli-1", "d-cli-2", "d-cli-3")

        def submit() -> None:
            with grpc.insecure_channel(environment["RAY_EXECUTOR_ADDRESS"]) as channel:
                stub = pb_grpc.RayExecutorServiceStub(channel)
                for derivation in derivations:
                    request = submission(STORIES["STORY-REFUNDS"], derivation)
                    assert stub.ExecuteDeliberation(request, timeout=5).status == "submitted"

        task_ids = {f"td:{derivation}:1" for derivation in derivations}
        responses = asyncio.run(collect(environment["NATS_URL"], task_ids, submit))
        process.send_signal(signal.SIGINT)
        printed, _ = process.communicate(timeout=15)

    # The first is served 0.3 s; the second is out of time while served, the third queued.
    outcomes = [
        (responses[f"td:{d}:1"][0], responses[f"td:{d}:1"][1].get("error_type"))
        for d in derivations
    ]
    assert outcomes == [
        ("agent.response.completed", None),
        ("agent.response.failed", "TimeoutError"),
        ("agent.response.failed", "TimeoutError"),
    ]
    lines = printed.splitlines()
    assert "# the executor's LLM: 1 slot x 0.3 s, timeout 0.5 s" in lines
    assert lines[-2:] == [
        "# llm: 0 in flight (0 served, 0 queued), 1 answered, 2 timed out",
        "# sandbox stopped",
    ]


def test_without_the_sandbox_extra_it_says_how_to_install_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(nats_server, "_scripts_dir", lambda: tmp_path / "bin")

    exit_code = main(["sandbox", "up", "--state-dir", str(tmp_path / "state")])

    assert exit_code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("td-pipeline: the local fleet needs nats-server")
    assert "pip install 'td-pipeline[sandbox]'" in line
    assert not (tmp_path / "state").exists()
