"""A connection that fails because of how it is set up gives one line naming the peer, where
it is, what went wrong and the settings to check: against the secure local fleet's real NATS
server and gRPC stand-ins (TLS, client certificates verified, logins)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from td_pipeline.application.ports import PortError, Unavailable
from td_pipeline.domain.values import PlanId
from td_pipeline.infrastructure.connection_errors import (
    certificate_expired,
    grpc_tls_failure,
    nats_failure,
    redacted_url,
)
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.grpc_health import GrpcHealthProbe
from td_pipeline.infrastructure.jetstream_consumer import JetStreamPuller
from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient
from td_pipeline.sandbox.certificates import CertificateAuthority, CertificateFiles
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.nats_server import NatsServer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("secure"), secure=True) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("stranger"), "a CA nobody trusts")


def pipeline_auth(fleet: LocalFleet) -> NatsAuth:
    assert fleet.security is not None
    return fleet.security.pipeline_auth()


def planning(fleet: LocalFleet, **tls: str | None) -> GrpcPlanningClient:
    env = fleet.environment()
    settings = ChannelSettings(
        address=env["PLANNING_SERVICE_ADDRESS"],
        tls_ca_path=env["TD_GRPC_TLS_CA"],
        tls_cert_path=env["TD_GRPC_TLS_CERT"],
        tls_key_path=env["TD_GRPC_TLS_KEY"],
        peer="Planning",
    )
    return GrpcPlanningClient(dataclasses.replace(settings, **tls))


def test_mutual_tls_to_planning_works(fleet: LocalFleet) -> None:
    assert planning(fleet).get_plan(PlanId("PLAN-PAY-1")).story_id.value == "STORY-REFUNDS"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "wrong CA",
            "TLS handshake failed: certificate verify failed: the server is not trusted "
            "(TD_GRPC_TLS_CA)",
        ),
        (
            "no client certificate",
            "TLS handshake failed: the server closed the connection: it may require a client "
            "certificate (TD_GRPC_TLS_CERT, TD_GRPC_TLS_KEY)",
        ),
        (
            "client certificate from another CA",
            "TLS handshake failed: the server refused our client certificate (expired, or not "
            "from a CA it trusts) (TD_GRPC_TLS_CERT, TD_GRPC_TLS_KEY)",
        ),
    ],
)
def test_a_grpc_tls_failure_is_one_line_naming_the_peer_and_is_no_outage(
    fleet: LocalFleet, stranger: CertificateAuthority, case: str, expected: str
) -> None:
    other = stranger.client("stranger-client")
    tls: dict[str, str | None] = {
        "wrong CA": {"tls_ca_path": str(stranger.ca)},
        "no client certificate": {"tls_cert_path": None, "tls_key_path": None},
        "client certificate from another CA": {
            "tls_cert_path": str(other.cert),
            "tls_key_path": str(other.key),
        },
    }[case]
    started = time.monotonic()
    with pytest.raises(PortError) as raised:
        planning(fleet, **tls).get_plan(PlanId("PLAN-PAY-1"))
    seconds = time.monotonic() - started

    address = fleet.environment()["PLANNING_SERVICE_ADDRESS"]
    assert str(raised.value) == f"Planning at {address}: {expected}"
    assert not isinstance(raised.value, Unavailable)  # not ridden out as an outage
    assert seconds < 10


def test_an_expired_client_certificate_is_refused_in_one_line(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    authority = CertificateAuthority(tmp_path)
    server = authority.server()
    old, good = authority.client("old", expired=True), authority.client("good")
    admin = NatsAuth(
        user="u",
        password="p",
        tls_ca_path=str(authority.ca),
        tls_cert_path=str(good.cert),
        tls_key_path=str(good.key),
    )
    nats_server = NatsServer(tmp_path / "nats", _security(authority.ca, server), admin)
    with nats_server:
        url = nats_server.url
        auth = NatsAuth(
            user="u",
            password="p",
            tls_ca_path=str(authority.ca),
            tls_cert_path=str(old.cert),
            tls_key_path=str(old.key),
        )
        with pytest.raises(ConnectionError) as raised:
            JetStreamPuller(url, auth)
    assert str(raised.value) == (
        f"cannot reach NATS at {url}: TLS handshake failed: our client "
        "certificate has expired (NATS_TLS_CERT, NATS_TLS_KEY)"
    )


def _security(ca: Path, server: CertificateFiles):  # type: ignore[no-untyped-def]
    from td_pipeline.sandbox.nats_config import NatsSecurity, NatsUser

    return NatsSecurity(
        ca=ca,
        server_cert=server.cert,
        server_key=server.key,
        users=(NatsUser("u", "PW"),),
        secrets={"PW": "p"},
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "authorization violation: login refused (NATS_USER, NATS_PASSWORD)"),
        (
            "wrong CA",
            "TLS handshake failed: certificate verify failed: the server is not trusted "
            "(NATS_TLS_CA)",
        ),
        (
            "no client certificate",
            "TLS handshake failed: the server requires a client certificate "
            "(NATS_TLS_CERT, NATS_TLS_KEY)",
        ),
    ],
)
def test_a_nats_login_or_tls_failure_is_one_line(
    fleet: LocalFleet, stranger: CertificateAuthority, case: str, expected: str
) -> None:
    auth = pipeline_auth(fleet)
    bad = {
        "wrong password": dataclasses.replace(auth, password="wrong"),
        "wrong CA": dataclasses.replace(auth, tls_ca_path=str(stranger.ca)),
        "no client certificate": dataclasses.replace(auth, tls_cert_path=None, tls_key_path=None),
    }[case]
    url = fleet.environment()["NATS_URL"]
    with pytest.raises(ConnectionError) as raised:
        JetStreamPuller(url, bad)
    assert str(raised.value) == f"cannot reach NATS at {url}: {expected}"
    JetStreamPuller(url, auth).close()  # the right settings connect


def test_tls_configured_refuses_a_plaintext_server(fleet: LocalFleet) -> None:
    with NatsServer() as plaintext:
        url = plaintext.url.replace("nats://", "tls://")
        with pytest.raises(ConnectionError) as raised:
            JetStreamPuller(url, pipeline_auth(fleet))
    assert str(raised.value) == (
        f"cannot reach NATS at {url}: TLS handshake failed: the server does not speak TLS "
        "(plaintext refused; check the address and NATS_TLS_CA)"
    )


def test_no_line_shows_a_secret_from_the_url() -> None:
    url = "nats://td:s3cret@127.0.0.1:4222"
    assert redacted_url(url) == "nats://127.0.0.1:4222"
    line = nats_failure(url, ConnectionRefusedError("refused"), NatsAuth())
    assert line == "NATS at nats://127.0.0.1:4222: connection refused"
    assert redacted_url("tls://127.0.0.1:4222") == "tls://127.0.0.1:4222"


def test_a_grpc_peer_hanging_up_on_an_expired_client_certificate_says_so(
    tmp_path: Path,
) -> None:
    """gRPC reports only that the server hung up during the handshake; our certificate's end
    date tells the expired case apart from a certificate of another CA."""
    authority = CertificateAuthority(tmp_path)
    expired, valid = authority.client("old", expired=True), authority.client("good")

    def line(cert: Path) -> str | None:
        return grpc_tls_failure("Planning", "127.0.0.1:1", "Socket closed", True, str(cert))

    assert line(expired.cert) == (
        "Planning at 127.0.0.1:1: TLS handshake failed: our client certificate has expired "
        "(TD_GRPC_TLS_CERT, TD_GRPC_TLS_KEY)"
    )
    assert "not from a CA it trusts" in (line(valid.cert) or "")
    assert certificate_expired(str(expired.cert)) and not certificate_expired(str(valid.cert))
    assert not certificate_expired(str(tmp_path / "missing.crt"))


def test_the_health_probe_names_a_tls_failure(
    fleet: LocalFleet, stranger: CertificateAuthority
) -> None:
    """/ready says why a peer is not ready when it is how we are set up, not the peer."""
    env = fleet.environment()
    settings = ChannelSettings(
        address=env["PLANNING_SERVICE_ADDRESS"],
        tls_ca_path=str(stranger.ca),
        tls_cert_path=env["TD_GRPC_TLS_CERT"],
        tls_key_path=env["TD_GRPC_TLS_KEY"],
        peer="Planning",
    )
    probe = GrpcHealthProbe("planning", settings)
    try:
        assert probe.problem() == (
            f"Planning at {settings.address}: TLS handshake failed: certificate verify failed: "
            "the server is not trusted (TD_GRPC_TLS_CA)"
        )
    finally:
        probe.close()
