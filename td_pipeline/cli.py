"""The `td-pipeline` command: one argparse tree, a module per subcommand.

Only the module of the subcommand being run is imported (each exposes `register`), so that
`check-proposal` loads neither Dagster, NATS nor gRPC, and a real fleet's commands never load
the sandbox or the dev tools. The others appear in `--help` by their line below."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (the module that registers it, its line in `td-pipeline --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "check-proposal": (
        "td_pipeline.commands.check_proposal",
        "lint an LLM answer the way the pipeline will",
    ),
    "retry-failed": (
        "td_pipeline.commands.retry_failed",
        "retry the stories whose latest attempt failed, as the retry schedule does",
    ),
    "sandbox": ("td_pipeline.sandbox.cli", "the local fleet (NATS, Planning, ...)"),
    "request": ("td_pipeline.commands.request", "publish a derivation request"),
    "watch": ("td_pipeline.commands.watch", "print derivation events as they arrive"),
    "tasks": ("td_pipeline.commands.tasks", "the tasks Planning holds for a story"),
    "serve-metrics": (
        "td_pipeline.commands.serve_metrics",
        "serve /metrics, /health and /ready for Prometheus and probes",
    ),
    "demo": (
        "td_pipeline.devtools.demo",
        "run the whole pipeline locally: fleet, Dagster daemon and UI, every sample story",
    ),
    "bench": ("td_pipeline.devtools.bench", "benchmarks"),
}


def _subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="td-pipeline",
        description="Derive executable tasks from planning stories with an LLM.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _subcommand(argv)
    for name, (module, summary) in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module).register(subcommands)
        else:
            # Listed, not loaded: never parsed, since it is not the one being run.
            subcommands.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(arguments).parse_args(arguments)
    exit_code: int = args.handler(args)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
