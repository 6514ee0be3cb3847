"""How td-pipeline proves who it is to NATS, and keeps the connection private.

nats-py does not insist on TLS for a `tls://` URL: it upgrades only when the server asks
(pitfalls.md). When a CA is configured, TLS is therefore made mandatory with a TLS handshake
before anything else, so a server offering plaintext is refused instead of being sent the
credentials in clear."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from td_pipeline.settings import Settings, SettingsError


@dataclass(frozen=True, slots=True)
class NatsAuth:
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_path: str | None = None  # a `.creds` file (JWT + nkey seed)
    nkey_seed_path: str | None = None  # a file holding a user's nkey seed (`SU...`)
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None  # a client certificate, for servers that verify one
    tls_key_path: str | None = None

    def __post_init__(self) -> None:
        if bool(self.user) != bool(self.password):
            raise ValueError("NATS user and password go together")
        logins = [
            name
            for name, given in (
                ("NATS_USER/NATS_PASSWORD", self.user),
                ("NATS_TOKEN", self.token),
                ("NATS_CREDS", self.credentials_path),
                ("NATS_NKEY_SEED", self.nkey_seed_path),
            )
            if given
        ]
        if len(logins) > 1:
            raise ValueError(f"choose one NATS login, not {' and '.join(logins)}")
        if bool(self.tls_cert_path) != bool(self.tls_key_path):
            raise ValueError("a NATS client certificate needs its key (and the key its cert)")
        if self.tls_cert_path and not self.tls_ca_path:
            raise ValueError("a NATS client certificate needs the CA (NATS_TLS_CA)")

    def __repr__(self) -> str:  # secrets never reach a log line
        kinds = [
            kind
            for kind, value in (
                ("user", self.user),
                ("token", self.token),
                ("credentials", self.credentials_path),
                ("nkey", self.nkey_seed_path),
                ("tls", self.tls_ca_path),
            )
            if value
        ]
        return f"NatsAuth({', '.join(kinds) or 'none'})"

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`."""
        options: dict[str, Any] = {}
        if self.user:
            options.update(user=self.user, password=self.password)
        if self.token:
            options["token"] = self.token
        if self.credentials_path:
            options["user_credentials"] = self.credentials_path
        if self.nkey_seed_path:
            options["nkeys_seed"] = self.nkey_seed_path
        if self.tls_ca_path:
            context = ssl.create_default_context(cafile=self.tls_ca_path)
            if self.tls_cert_path and self.tls_key_path:
                context.load_cert_chain(self.tls_cert_path, self.tls_key_path)
            options.update(tls=context, tls_handshake_first=True)
        return options


NO_AUTH = NatsAuth()


def nats_auth(settings: Settings) -> NatsAuth:
    """How the settings say to connect (NATS_USER/PASSWORD, NATS_TOKEN, NATS_CREDS,
    NATS_NKEY_SEED, NATS_TLS_*); SettingsError when they contradict each other."""
    try:
        return NatsAuth(
            user=settings.nats_user,
            password=_secret(settings.nats_password),
            token=_secret(settings.nats_token),
            credentials_path=settings.nats_credentials_path,
            nkey_seed_path=settings.nats_nkey_seed_path,
            tls_ca_path=settings.nats_tls_ca_path,
            tls_cert_path=settings.nats_tls_cert_path,
            tls_key_path=settings.nats_tls_key_path,
        )
    except ValueError as error:
        raise SettingsError(f"bad setting: {error}") from None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
