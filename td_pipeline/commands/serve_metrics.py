"""`td-pipeline serve-metrics`: a long-lived HTTP server for Prometheus and the orchestrator's
probes, on loopback unless told otherwise.

- `/metrics`: the pipeline's metrics (`metrics_collector.PipelineCollector`), read on scrape.
- `/health`: 200 while this process lives.
- `/ready`: 200 when NATS answers, the Dagster daemon's heartbeats are fresh and Planning,
  Context and the Ray Executor answer the standard gRPC health check; else 503, one line a
  check naming what is not ready.

Reads the settings (NATS_*, the peers' addresses, TD_METRICS_*, ...) and the Dagster instance
in $DAGSTER_HOME."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import dagster as dg
from prometheus_client import CollectorRegistry, make_wsgi_app

from td_pipeline.commands.metrics_collector import PipelineCollector
from td_pipeline.commands.metrics_sources import Durable, PeerProbe
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.grpc_health import GrpcHealthProbe
from td_pipeline.infrastructure.jetstream_monitor import DerivationStreamReader, JetStreamMonitor
from td_pipeline.infrastructure.nats_auth import nats_auth
from td_pipeline.orchestration.instance_metrics import InstanceReadings
from td_pipeline.settings import Settings, SettingsError, read_settings

EXIT_OK, EXIT_USAGE = 0, 2
StartResponse = Callable[..., Any]


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "serve-metrics",
        help="serve /metrics, /health and /ready for Prometheus and probes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (default TD_METRICS_HOST, 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port (default TD_METRICS_PORT, 9108; 0 picks a free one)"
    )
    parser.set_defaults(handler=run_serve_metrics)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up the shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Every scrape would log a line; errors still reach stderr."""


class _PeerNotConfigured:
    def __init__(self, name: str, variable: str) -> None:
        self.name = name
        self._variable = variable

    def problem(self) -> str | None:
        return f"{self._variable} is not set"


def peer_probes(settings: Settings) -> list[PeerProbe]:
    probes: list[PeerProbe] = []
    for name, address, variable in (
        ("planning", settings.planning_address, "PLANNING_SERVICE_ADDRESS"),
        ("context", settings.context_address, "CONTEXT_SERVICE_ADDRESS"),
        ("executor", settings.executor_address, "RAY_EXECUTOR_ADDRESS"),
    ):
        if not address.strip():
            probes.append(_PeerNotConfigured(name, variable))
            continue
        channel = ChannelSettings(
            address,
            timeout_seconds=2.0,
            retry_attempts=1,
            tls_ca_path=settings.grpc_tls_ca_path,
            tls_cert_path=settings.grpc_tls_cert_path,
            tls_key_path=settings.grpc_tls_key_path,
        )
        probes.append(GrpcHealthProbe(name, channel))
    return probes


def metrics_app(collector: PipelineCollector) -> Callable[[dict[str, Any], StartResponse], Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/ready":
            readiness = collector.readiness()
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            return _text(start_response, status, readiness.text())
        return _text(start_response, "404 Not Found", "try /metrics, /health or /ready\n")

    return app


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def run_serve_metrics(args: argparse.Namespace) -> int:
    try:
        settings = read_settings()
    except SettingsError as error:
        print(f"td-pipeline serve-metrics: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not settings.nats_url.strip():
        print("td-pipeline serve-metrics: bad setting: NATS_URL is not set", file=sys.stderr)
        return EXIT_USAGE
    if not os.environ.get("DAGSTER_HOME"):
        print(
            "td-pipeline serve-metrics: set DAGSTER_HOME to the daemon's instance directory",
            file=sys.stderr,
        )
        return EXIT_USAGE
    host = args.host or settings.metrics_host
    port = settings.metrics_port if args.port is None else args.port
    instance = dg.DagsterInstance.get()
    monitor = JetStreamMonitor(settings.nats_url, nats_auth(settings))
    peers = peer_probes(settings)
    collector = PipelineCollector(
        stream=DerivationStreamReader(monitor, settings.request_stream),
        nats=monitor,
        instance=InstanceReadings(
            instance, settings.llm_timeout_seconds, settings.llm_max_in_flight
        ),
        peers=peers,
        durables=[
            Durable(settings.request_stream, settings.request_durable),
            Durable(settings.responses_stream, settings.result_durable),
        ],
        heartbeat_tolerance_seconds=settings.daemon_heartbeat_tolerance_seconds,
    )
    try:
        server = make_server(
            host, port, metrics_app(collector), server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as error:
        print(
            f"td-pipeline serve-metrics: cannot listen on {host}:{port}: {error}",
            file=sys.stderr,
        )
        monitor.close()
        return EXIT_USAGE
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    serving = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    serving.start()
    print(
        f"serving metrics on http://{host}:{server.server_port}/metrics "
        "(and /health, /ready); Ctrl-C stops",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        for peer in peers:
            if isinstance(peer, GrpcHealthProbe):
                peer.close()
        monitor.close()
        instance.dispose()
    return EXIT_OK
