"""The standard gRPC health check (`grpc.health.v1.Health/Check`) of a fleet peer, over the
same kind of channel (TLS or mTLS) the pipeline uses to call it."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from td_pipeline.infrastructure.connection_errors import grpc_tls_failure
from td_pipeline.infrastructure.grpc_channel import ChannelSettings, LazyChannel

HEALTH_SERVICE = "grpc.health.v1.Health"


class GrpcHealthProbe:
    def __init__(self, name: str, settings: ChannelSettings) -> None:
        self.name = name
        self._settings = settings
        self._channel = LazyChannel(settings, HEALTH_SERVICE, ())

    def problem(self) -> str | None:
        """None when the peer's server answers SERVING; else what it answered, in a few words."""
        stub = health_pb2_grpc.HealthStub(self._channel.get())
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._settings.timeout_seconds
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            settings = self._settings
            if code == grpc.StatusCode.UNAVAILABLE:  # how we are set up, or the peer is down
                tls_failure = grpc_tls_failure(
                    settings.peer,
                    settings.address,
                    error.details() or "",
                    settings.tls,
                    settings.tls_cert_path,
                )
                if tls_failure is not None:
                    return tls_failure
            return f"{settings.address}: {code.name}"
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            return f"{self._settings.address}: {status}"
        return None

    def close(self) -> None:
        self._channel.close()
