"""The `td-pipeline` command: one argparse tree, a module per subcommand group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from td_pipeline.commands import check_proposal, retry_failed
from td_pipeline.sandbox import bench, demo
from td_pipeline.sandbox import commands as sandbox_commands

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="td-pipeline",
        description="Derive executable tasks from planning stories with an LLM.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_proposal.register(subcommands)
    retry_failed.register(subcommands)
    sandbox_commands.register(subcommands)
    demo.register(subcommands)
    bench.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_code: int = args.handler(args)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
