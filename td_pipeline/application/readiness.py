"""When td-pipeline is ready to take work: every dependency answered, and the Dagster daemon
(sensors, run queue) is alive. Pure: the probes that gather the facts live at the edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # "nats", "daemon", "planning", ...
    ok: bool
    detail: str = ""  # why not, in a few words


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def text(self) -> str:
        """One line a check: `ok nats` or `NOT READY daemon: no heartbeat from SENSOR`."""
        return "".join(
            f"ok {check.name}\n" if check.ok else f"NOT READY {check.name}: {check.detail}\n"
            for check in self.checks
        )


def daemon_check(
    required: Sequence[str], heartbeat_ages: Mapping[str, float], tolerance_seconds: float
) -> Check:
    """The daemon is alive when each daemon the instance needs has a heartbeat younger than
    the tolerance (Dagster's daemons beat every 30 s)."""
    stale = []
    for daemon in required:
        age = heartbeat_ages.get(daemon)
        if age is None:
            stale.append(f"{daemon} (no heartbeat)")
        elif age > tolerance_seconds:
            stale.append(f"{daemon} ({age:.0f}s ago)")
    if not required:
        return Check("daemon", False, "the instance names no daemon")
    if stale:
        return Check("daemon", False, "stale heartbeats: " + ", ".join(stale))
    return Check("daemon", True)
