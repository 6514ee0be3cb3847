"""End to end against the secure local fleet (NATS with TLS, verified client certificates and
a login; td-pipeline's NATS user allowed only its subjects; gRPC with mutual TLS), through a
real dagster-daemon and webserver.

One fleet per login (user/password, token), whose td-pipeline secret is a canary: after the
derivations, the canary must appear nowhere Dagster or NATS keeps things. Bad settings (a wrong
secret, a CA that did not sign the server, no client certificate) fail the sensor ticks at
once with one line, and the request waits in the stream until the settings are fixed."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.sandbox.certificates import CertificateAuthority
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.secure_fleet import Login
from td_pipeline_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(145)]

CANARY = "canary-7f3b9c1e-do-not-leak"
STORY, PLAN = "STORY-REFUNDS", "PLAN-PAY-1"


@pytest.fixture(scope="module", params=[Login.PASSWORD, Login.TOKEN], ids=str)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFleet]:
    state = tmp_path_factory.mktemp(f"secure-{request.param}")
    with LocalFleet(state, secure=True, login=request.param, pipeline_secret=CANARY) as fleet:
        yield fleet


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fleet_auth(fleet: LocalFleet) -> NatsAuth:
    assert fleet.security is not None
    return fleet.security.fleet_auth()


async def publish_request(fleet: LocalFleet, story: str, plan: str) -> None:
    connection = await nats.connect(
        fleet.environment()["NATS_URL"], **fleet_auth(fleet).connect_options()
    )
    try:
        body = json.dumps({"plan_id": plan, "story_id": story}).encode()
        await connection.jetstream().publish("task.derivation.requested", body)
    finally:
        await connection.close()


async def outcome_events(fleet: LocalFleet, story: str, timeout: float) -> list[tuple[str, bytes]]:
    """Every message in the derivation stream (raw bytes), once `story` has an outcome."""
    connection = await nats.connect(
        fleet.environment()["NATS_URL"], **fleet_auth(fleet).connect_options()
    )
    try:
        subscription = await connection.jetstream().subscribe(
            "task.derivation.*", ordered_consumer=True
        )
        events: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await subscription.next_msg(timeout=1)
                events.append((message.subject, message.data))
            except nats.errors.TimeoutError:
                if story in completed_stories(events) or story in failed_stories(events):
                    break
        return events
    finally:
        await connection.close()


def completed_stories(events: list[tuple[str, bytes]]) -> list[str]:
    return [json.loads(data)["story_id"] for s, data in events if s == "task.derivation.completed"]


def failed_stories(events: list[tuple[str, bytes]]) -> list[str]:
    return [json.loads(data)["story_id"] for s, data in events if s == "task.derivation.failed"]


def test_the_secret_is_really_needed(fleet: LocalFleet) -> None:
    """The canary is the login: without it the server refuses the connection."""
    environment = fleet.environment()
    secret = "NATS_PASSWORD" if fleet.login is Login.PASSWORD else "NATS_TOKEN"
    assert environment[secret] == CANARY

    async def connect(value: str) -> None:
        auth = NatsAuth(
            user=environment.get("NATS_USER"),
            password=value if fleet.login is Login.PASSWORD else None,
            token=value if fleet.login is Login.TOKEN else None,
            tls_ca_path=environment["NATS_TLS_CA"],
            tls_cert_path=environment["NATS_TLS_CERT"],
            tls_key_path=environment["NATS_TLS_KEY"],
        )
        connection = await nats.connect(
            environment["NATS_URL"],
            **auth.connect_options(),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
        )
        await connection.close()

    asyncio.run(connect(CANARY))
    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(connect("not-the-" + CANARY))


def test_bad_settings_fail_fast_in_one_line_and_lose_no_request(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    environment = fleet.environment()
    stranger = CertificateAuthority(tmp_path / "stranger", "a CA nobody here trusts")
    secret = "NATS_PASSWORD" if fleet.login is Login.PASSWORD else "NATS_TOKEN"
    login_variables = "NATS_USER, NATS_PASSWORD" if fleet.login is Login.PASSWORD else "NATS_TOKEN"
    bad_settings = {
        "wrong secret": (
            {secret: "wrong-" + CANARY},
            f"authorization violation: login refused ({login_variables})",
        ),
        "wrong CA": (
            {"NATS_TLS_CA": str(stranger.ca)},
            "TLS handshake failed: certificate verify failed: the server is not trusted "
            "(NATS_TLS_CA)",
        ),
        "no client certificate": (
            {"NATS_TLS_CERT": "", "NATS_TLS_KEY": ""},
            "TLS handshake failed: the server requires a client certificate "
            "(NATS_TLS_CERT, NATS_TLS_KEY)",
        ),
    }
    story, plan = "STORY-MFA", "PLAN-AUTH-1"
    asyncio.run(publish_request(fleet, story, plan))
    home = prepare_home(tmp_path / "dagster_home")
    for name, (override, line) in bad_settings.items():
        logs = tmp_path / "logs" / name.replace(" ", "-")
        started = time.monotonic()
        with DagsterProcesses(home, {**environment, **override}, logs):
            log = logs / "dagster-daemon.log"
            wait_until(
                lambda line=line, log=log: log.exists() and line in log.read_text(),
                90,
                f"{name}: the one-line error in the daemon's log",
                0.5,
            )
        seconds = time.monotonic() - started
        text = (logs / "dagster-daemon.log").read_text()
        message = next(row for row in text.splitlines() if line in row)
        assert f"cannot reach NATS at {environment['NATS_URL']}: {line}" in message, message
        assert CANARY not in text
        print(f"{fleet.login} {name}: failed tick after {seconds:.1f}s")

    # Fixed: the request that waited in the stream is derived, once.
    with DagsterProcesses(home, environment, tmp_path / "logs" / "fixed"):
        events = asyncio.run(outcome_events(fleet, story, timeout=180))
    assert story in completed_stories(events), events


def test_a_derivation_completes_and_the_canary_appears_nowhere(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    home = prepare_home(tmp_path / "dagster_home")
    logs = tmp_path / "logs"
    processes = DagsterProcesses(home, fleet.environment(), logs, webserver_port=free_port())
    with processes:
        asyncio.run(publish_request(fleet, STORY, PLAN))
        events = asyncio.run(outcome_events(fleet, STORY, timeout=180))
        assert STORY in completed_stories(events), events
        processes.wait_for_webserver()
        graphql = ui_answers(processes.webserver_url)
    assert STORY in graphql  # the UI's answers were read: they hold the story's metadata

    places: dict[str, bytes] = {"graphql": graphql.encode()}
    for path in [*home.rglob("*"), *logs.rglob("*")]:
        if path.is_file():
            places[str(path)] = path.read_bytes()  # sqlite storage, run logs, compute logs
    places["events on NATS"] = b"\n".join(data for _, data in events)
    assert len(places) > 5
    leaks = [place for place, data in places.items() if CANARY.encode() in data]
    assert not leaks, leaks


def ui_answers(webserver_url: str) -> str:
    """What the UI shows of the runs (configs, tags) and the assets' materialization metadata."""
    query = """
    { runsOrError { ... on Runs { results { runId runConfigYaml tags { key value } } } }
      assetNodes { assetKey { path } assetMaterializations(limit: 10) {
          partition metadataEntries { label description
            ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } } } } }
    """
    request = urllib.request.Request(
        f"{webserver_url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    assert "errors" not in body, body
    return json.dumps(body)
