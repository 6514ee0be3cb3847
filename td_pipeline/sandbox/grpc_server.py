"""Starting the sandbox's gRPC servers: loopback by default, a free port, health checking."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ServicerRegistration = Callable[[grpc.Server], None]


@dataclass(frozen=True, slots=True)
class ServerTls:
    """Serve TLS with this certificate; with `client_ca`, mutual TLS: a client must present a
    certificate that CA signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True, slots=True)
class RunningServer:
    server: grpc.Server
    address: str  # host:port

    def stop(self, grace_seconds: float = 1.0) -> None:
        self.server.stop(grace_seconds).wait()


def start_grpc_server(
    registrations: Sequence[ServicerRegistration],
    service_names: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 8,
    tls: ServerTls | None = None,
) -> RunningServer:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    for register in registrations:
        register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound_port = (
        server.add_secure_port(f"{host}:{port}", tls.credentials())
        if tls is not None
        else server.add_insecure_port(f"{host}:{port}")
    )
    if bound_port == 0:
        raise OSError(f"cannot bind a gRPC server to {host}:{port}")
    server.start()
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, address=f"{host}:{bound_port}")
