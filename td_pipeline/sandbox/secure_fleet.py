"""What makes the local fleet secure (`sandbox up --secure`, `LocalFleet(secure=True)`): a
throw-away CA, NATS with TLS (client certificates verified) and either users with permissions
or a token, and the gRPC stand-ins served with mutual TLS.

Two NATS identities in the `password` login: `td-pipeline`, allowed only what the pipeline
needs (`nats_config.pipeline_permissions`), and `fleet`, the peers' own (Planning publishing
requests, the executor its answers, the sandbox creating streams). A `token` login has one
identity and no per-user permissions: nats-server's token authorization knows no users."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.sandbox.certificates import CertificateAuthority, CertificateFiles
from td_pipeline.sandbox.grpc_server import ServerTls
from td_pipeline.sandbox.nats_config import NatsSecurity, NatsUser, pipeline_permissions

PIPELINE_USER, FLEET_USER = "td-pipeline", "fleet"
PIPELINE_SECRET_VARIABLE, FLEET_SECRET_VARIABLE = "TD_SANDBOX_NATS_SECRET", "FLEET_NATS_SECRET"


class Login(StrEnum):
    PASSWORD = "password"  # users in an account, td-pipeline's with least privilege
    TOKEN = "token"  # one token for every client


@dataclass(frozen=True, slots=True)
class FleetSecurity:
    ca: Path
    server: CertificateFiles
    pipeline_client: CertificateFiles  # td-pipeline's client certificate
    fleet_client: CertificateFiles  # the peers' and the sandbox's own
    login: Login
    pipeline_secret: str = field(repr=False)  # td-pipeline's password, or the token
    fleet_secret: str = field(repr=False)

    def nats_security(self) -> NatsSecurity:
        ca, cert, key = self.ca, self.server.cert, self.server.key
        if self.login is Login.TOKEN:
            return NatsSecurity(
                ca=ca,
                server_cert=cert,
                server_key=key,
                token_variable=PIPELINE_SECRET_VARIABLE,
                secrets={PIPELINE_SECRET_VARIABLE: self.pipeline_secret},
            )
        publish, subscribe = pipeline_permissions()
        return NatsSecurity(
            ca=ca,
            server_cert=cert,
            server_key=key,
            users=(
                NatsUser(PIPELINE_USER, PIPELINE_SECRET_VARIABLE, publish, subscribe),
                NatsUser(FLEET_USER, FLEET_SECRET_VARIABLE),
            ),
            secrets={
                PIPELINE_SECRET_VARIABLE: self.pipeline_secret,
                FLEET_SECRET_VARIABLE: self.fleet_secret,
            },
        )

    def fleet_auth(self) -> NatsAuth:
        """How the sandbox and the peers log in to NATS."""
        return self._nats_auth(self.fleet_client, FLEET_USER, self.fleet_secret)

    def pipeline_auth(self) -> NatsAuth:
        """How td-pipeline logs in to NATS (its least-privilege user, or the token)."""
        return self._nats_auth(self.pipeline_client, PIPELINE_USER, self.pipeline_secret)

    def _nats_auth(self, client: CertificateFiles, user: str, password: str) -> NatsAuth:
        tls = {
            "tls_ca_path": str(self.ca),
            "tls_cert_path": str(client.cert),
            "tls_key_path": str(client.key),
        }
        if self.login is Login.TOKEN:
            return NatsAuth(token=self.pipeline_secret, **tls)  # one token for every client
        return NatsAuth(user=user, password=password, **tls)

    def server_tls(self) -> ServerTls:
        """The gRPC stand-ins: TLS with the server certificate, client certificates required."""
        return ServerTls(cert=self.server.cert, key=self.server.key, client_ca=self.ca)

    def pipeline_environment(self) -> dict[str, str]:
        """td-pipeline's settings for this fleet (NATS login and TLS, gRPC mTLS)."""
        login = (
            {"NATS_TOKEN": self.pipeline_secret}
            if self.login is Login.TOKEN
            else {"NATS_USER": PIPELINE_USER, "NATS_PASSWORD": self.pipeline_secret}
        )
        client = self.pipeline_client
        return {
            **login,
            "NATS_TLS_CA": str(self.ca),
            "NATS_TLS_CERT": str(client.cert),
            "NATS_TLS_KEY": str(client.key),
            "TD_GRPC_TLS_CA": str(self.ca),
            "TD_GRPC_TLS_CERT": str(client.cert),
            "TD_GRPC_TLS_KEY": str(client.key),
        }

    def fleet_environment(self) -> dict[str, str]:
        """The same settings with the fleet's NATS identity: for `td-pipeline request`, which
        publishes as Planning would (td-pipeline's own user may not)."""
        if self.login is Login.TOKEN:
            return self.pipeline_environment()
        return {
            **self.pipeline_environment(),
            "NATS_USER": FLEET_USER,
            "NATS_PASSWORD": self.fleet_secret,
            "NATS_TLS_CERT": str(self.fleet_client.cert),
            "NATS_TLS_KEY": str(self.fleet_client.key),
        }


def make_fleet_security(
    directory: Path, login: Login = Login.PASSWORD, pipeline_secret: str | None = None
) -> FleetSecurity:
    """A new CA and certificates under `directory`, and new random secrets (td-pipeline's
    may be given: the canary test chooses it)."""
    authority = CertificateAuthority(directory)
    return FleetSecurity(
        ca=authority.ca,
        server=authority.server(),
        pipeline_client=authority.client(PIPELINE_USER),
        fleet_client=authority.client(FLEET_USER),
        login=login,
        pipeline_secret=pipeline_secret or new_secret(),
        fleet_secret=new_secret(),
    )


def new_secret() -> str:
    """A random password nats-server reads as a string: it parses an expanded `$NAME` as a
    value, so one starting with a digit or `-` (a urlsafe token, one time in three) was read
    as a number and refused."""
    return "s" + secrets.token_hex(24)
