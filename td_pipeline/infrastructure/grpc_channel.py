"""gRPC channels for the fleet's services: explicit deadlines, retries, optional (m)TLS.

A channel is made lazily and once per process: Dagster runs steps in subprocesses, and a
channel inherited through fork() is unreliable."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from td_pipeline.application.ports import NotFound, PortError, Rejected, Unavailable
from td_pipeline.infrastructure.connection_errors import grpc_tls_failure

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    address: str  # host:port
    timeout_seconds: float = 5.0
    retry_attempts: int = 4  # 1 = no retry; gRPC caps attempts at 5
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None  # with tls_key_path: mutual TLS
    tls_key_path: str | None = None
    peer: str = "gRPC peer"  # who listens there ("Planning"), for one-line errors

    def __post_init__(self) -> None:
        if not self.address.strip() or ":" not in self.address:
            raise ValueError(f"gRPC address {self.address!r} must be host:port")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if not 1 <= self.retry_attempts <= 5:
            raise ValueError("retry_attempts must be 1..5")
        if (self.tls_cert_path is None) != (self.tls_key_path is None):
            raise ValueError("mutual TLS needs both tls_cert_path and tls_key_path")

    @property
    def tls(self) -> bool:
        return self.tls_ca_path is not None or self.tls_cert_path is not None


def service_config(service: str, idempotent_methods: Sequence[str], attempts: int) -> str:
    """Retry UNAVAILABLE, with backoff, for the idempotent methods only: a server may answer
    UNAVAILABLE after doing part of the work (Planning creates tasks one by one)."""
    if not idempotent_methods or attempts < 2:  # gRPC's retryPolicy needs 2 attempts or more
        return json.dumps({})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service, "method": m} for m in idempotent_methods],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.2s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def open_channel(
    settings: ChannelSettings, service: str, idempotent_methods: Sequence[str]
) -> grpc.Channel:
    config = service_config(service, idempotent_methods, settings.retry_attempts)
    options = [("grpc.enable_retries", 1), ("grpc.service_config", config)]
    if not settings.tls:
        return grpc.insecure_channel(settings.address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_path),
        private_key=_read(settings.tls_key_path),
        certificate_chain=_read(settings.tls_cert_path),
    )
    return grpc.secure_channel(settings.address, credentials, options=options)


class LazyChannel:
    """One channel per process, made on first use."""

    def __init__(
        self, settings: ChannelSettings, service: str, idempotent_methods: Sequence[str]
    ) -> None:
        self._settings = settings
        self._service = service
        self._idempotent_methods = tuple(idempotent_methods)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: grpc.Channel | None = None

    def get(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                self._channel = open_channel(
                    self._settings, self._service, self._idempotent_methods
                )
                self._pid = os.getpid()
            return self._channel

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None


def call(what: str, settings: ChannelSettings, rpc: Callable[[float], T]) -> T:
    """Run `rpc(timeout)` and translate gRPC failures into the ports' errors."""
    try:
        return rpc(settings.timeout_seconds)
    except grpc.RpcError as error:
        raise translate(what, settings, error) from error


def translate(what: str, settings: ChannelSettings, error: grpc.RpcError) -> PortError:
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    address = settings.address
    if code == grpc.StatusCode.UNAVAILABLE:
        tls_failure = grpc_tls_failure(
            settings.peer, address, details, settings.tls, settings.tls_cert_path
        )
        if tls_failure is not None:
            # How we are set up, not an outage: no retry inside the step can fix it.
            return PortError(tls_failure)
    message = f"{what} at {address}: {code.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(message)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return Rejected(message)
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    ):
        return Unavailable(message)
    return PortError(message)
