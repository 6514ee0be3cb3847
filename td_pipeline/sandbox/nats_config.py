"""The secure local fleet's nats-server configuration: TLS (handshake first, client
certificates verified), and either one account with JetStream whose users have their own
permissions, or a single token.

Secrets are not written into the file: the config names environment variables (unquoted
`$NAME`, which nats-server expands; in quotes it would be literal, pitfalls.md), and the
server process is given their values (`NatsSecurity.server_environment`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSES_STREAM,
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_STREAM,
    REQUEST_DURABLE,
    RESULT_DURABLE,
)

ACCOUNT = "FLEET"


def pipeline_permissions(
    request_stream: str = DERIVATION_STREAM.name,
    durables: Sequence[tuple[str, str]] = (
        (DERIVATION_STREAM.name, REQUEST_DURABLE),
        (AGENT_RESPONSES_STREAM.name, RESULT_DURABLE),
    ),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish, subscribe) subjects td-pipeline needs, and nothing more: publish its two
    outcome events; create, read and pull from its own durable consumers and ack their
    messages; read the derivation stream's info and its messages by sequence (`watch` and
    `serve-metrics`: `infrastructure.jetstream_monitor`, which creates no consumer); replies on
    inboxes. No right to create any other consumer or to pull from one."""
    publish = [DERIVATION_COMPLETED, DERIVATION_FAILED]
    for stream, durable in durables:
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",  # create/update, filtered
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",  # servers before 2.9
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    publish += [
        f"$JS.API.STREAM.INFO.{request_stream}",  # its sequences (and creation time)
        f"$JS.API.STREAM.MSG.GET.{request_stream}",  # read-only: one message by sequence
    ]
    return tuple(publish), ("_INBOX.>",)


@dataclass(frozen=True, slots=True)
class NatsUser:
    name: str
    password_variable: str  # the environment variable holding the password
    publish: tuple[str, ...] | None = None  # None: every subject
    subscribe: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.password_variable.isidentifier():
            raise ValueError(f"{self.password_variable!r} is not an environment variable name")


@dataclass(frozen=True, slots=True)
class NatsSecurity:
    ca: Path
    server_cert: Path
    server_key: Path
    verify_clients: bool = True  # every client must present a certificate from the CA
    users: tuple[NatsUser, ...] = ()  # one account with JetStream, these users in it
    token_variable: str | None = None  # or: a single token, no per-user permissions
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # variable -> value

    def __post_init__(self) -> None:
        if bool(self.users) == bool(self.token_variable):
            raise ValueError("a secure NATS server has users or a token, one of the two")
        named = {u.password_variable for u in self.users} | {self.token_variable} - {None}
        missing = sorted(str(name) for name in named if name not in self.secrets)
        if missing:
            raise ValueError(f"no value for {', '.join(missing)}")

    def server_environment(self) -> dict[str, str]:
        return dict(self.secrets)


def _string(value: str | Path) -> str:
    return json.dumps(str(value))


def _subjects(subjects: Sequence[str]) -> str:
    return "[" + ", ".join(_string(subject) for subject in subjects) + "]"


def _user_block(user: NatsUser) -> str:
    fields = [f"user: {_string(user.name)}", f"password: ${user.password_variable}"]
    rules = []
    if user.publish is not None:
        rules.append(f"publish: {{ allow: {_subjects(user.publish)} }}")
    if user.subscribe is not None:
        rules.append(f"subscribe: {{ allow: {_subjects(user.subscribe)} }}")
    if rules:
        fields.append("permissions: { " + ", ".join(rules) + " }")
    return "{ " + ", ".join(fields) + " }"


def server_config(security: NatsSecurity) -> str:
    """The text of a nats-server config file (listen address, port and JetStream come from
    the command line)."""
    lines = [
        "tls {",
        f"  cert_file: {_string(security.server_cert)}",
        f"  key_file: {_string(security.server_key)}",
        f"  ca_file: {_string(security.ca)}",
        f"  verify: {'true' if security.verify_clients else 'false'}",
        # TLS before anything else: a client cannot be talked into plaintext (pitfalls.md).
        "  handshake_first: true",
        "  timeout: 2",
        "}",
    ]
    if security.token_variable:
        lines += ["authorization {", f"  token: ${security.token_variable}", "}"]
    else:
        lines += ["accounts {", f"  {ACCOUNT} {{", "    jetstream: enabled", "    users: ["]
        lines += [f"      {_user_block(user)}" for user in security.users]
        lines += ["    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def write_server_config(security: NatsSecurity, path: Path) -> Path:
    path.write_text(server_config(security))
    return path
