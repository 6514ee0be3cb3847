"""The secure fleet's pieces: the throw-away certificates and the nats-server config writer."""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from td_pipeline.sandbox.certificates import CertificateAuthority
from td_pipeline.sandbox.nats_config import (
    NatsSecurity,
    NatsUser,
    pipeline_permissions,
    server_config,
)
from td_pipeline.sandbox.secure_fleet import make_fleet_security
from td_pipeline.sandbox.state_dir import write_private


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_certificates_chain_to_the_ca_and_name_the_loopback_server(tmp_path: Path) -> None:
    files = make_fleet_security(tmp_path)  # what `sandbox up --secure` makes
    ca, server = load(files.ca), load(files.server.cert)
    client = load(files.pipeline_client.cert)

    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    now = datetime.datetime.now(datetime.UTC)
    assert ca.not_valid_before_utc < now < client.not_valid_after_utc
    # OpenSSL takes them as a server and a client would load them; keys are private.
    pipeline = files.pipeline_client
    ssl.create_default_context(cafile=files.ca).load_cert_chain(pipeline.cert, pipeline.key)
    assert stat.S_IMODE(pipeline.key.stat().st_mode) == 0o600


def test_an_expired_client_certificate_is_expired(tmp_path: Path) -> None:
    old = load(CertificateAuthority(tmp_path).client("old", expired=True).cert)
    assert old.not_valid_after_utc < datetime.datetime.now(datetime.UTC)


def security(tmp_path: Path, **overrides: object) -> NatsSecurity:
    publish, subscribe = pipeline_permissions()
    arguments: dict[str, object] = {
        "ca": tmp_path / "ca.crt",
        "server_cert": tmp_path / "server.crt",
        "server_key": tmp_path / "server-key.pem",
        "users": (NatsUser("td-pipeline", "TD_PW", publish, subscribe), NatsUser("fleet", "FL")),
        "secrets": {"TD_PW": "s3cret-td", "FL": "s3cret-fleet"},
    }
    return NatsSecurity(**{**arguments, **overrides})  # type: ignore[arg-type]


def test_the_config_requires_tls_first_and_verified_clients_and_holds_no_secret(
    tmp_path: Path,
) -> None:
    text = server_config(security(tmp_path))

    assert "handshake_first: true" in text and "verify: true" in text
    assert f'ca_file: "{tmp_path / "ca.crt"}"' in text
    assert "jetstream: enabled" in text
    # Passwords are unquoted variables (quoted, nats-server would take them literally).
    assert "password: $TD_PW" in text and "password: $FL" in text
    assert "s3cret" not in text
    assert security(tmp_path).server_environment() == {"TD_PW": "s3cret-td", "FL": "s3cret-fleet"}


def test_the_pipeline_user_may_publish_its_outcomes_and_use_its_consumers_only() -> None:
    publish, subscribe = pipeline_permissions()

    assert "task.derivation.completed" in publish and "task.derivation.failed" in publish
    assert "task.derivation.requested" not in publish  # Planning's to publish, not ours
    assert not [
        s
        for s in publish
        if s.endswith((".>", "*")) and s.startswith("$JS.API.") and "task-derivation-" not in s
    ]  # no wildcard over other consumers or streams
    assert "$JS.API.CONSUMER.MSG.NEXT.task_derivation.task-derivation-request-consumer" in publish
    assert "$JS.ACK.AGENT_RESPONSES.task-derivation-result-consumer.>" in publish
    # The stream is read by sequence (watch, serve-metrics): no consumer of any other name.
    assert "$JS.API.STREAM.MSG.GET.task_derivation" in publish
    assert not [
        s for s in publish if s.startswith("$JS.API.CONSUMER.") and "task-derivation-" not in s
    ]
    assert subscribe == ("_INBOX.>",)


def test_a_token_server_has_no_users_and_every_secret_needs_a_value(tmp_path: Path) -> None:
    text = server_config(security(tmp_path, users=(), token_variable="TOK", secrets={"TOK": "t"}))
    assert "token: $TOK" in text and "accounts" not in text
    with pytest.raises(ValueError, match="users or a token"):
        security(tmp_path, token_variable="TOK")
    with pytest.raises(ValueError, match="no value for FL"):
        security(tmp_path, secrets={"TD_PW": "x"})


def test_an_env_file_left_readable_by_an_earlier_run_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    write_private(path, ["NATS_PASSWORD=s3cret"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "NATS_PASSWORD=s3cret\n"
