"""What `td-pipeline sandbox up` leaves in its state dir for the commands that talk to it:
`sandbox.env` (the fleet's addresses, shell-sourceable) and `planning.sqlite` (Planning's store).

Kept free of the servers' imports: `td-pipeline request | watch | tasks` read these files
without loading the local fleet."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

DEFAULT_STATE_DIR = Path(".sandbox")
ENV_FILE_NAME = "sandbox.env"
FLEET_ENV_FILE_NAME = "fleet.env"  # secure mode: the fleet's own NATS identity (requests)
STORE_FILE_NAME = "planning.sqlite"


def write_private(path: Path, lines: list[str]) -> None:
    """The lines, readable by their owner only (they may hold the sandbox's secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an earlier run keeps its mode otherwise
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")


def read_env_file(state_dir: Path) -> dict[str, str]:
    path = state_dir / ENV_FILE_NAME
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): " ".join(shlex.split(value)) for name, value in pairs}
