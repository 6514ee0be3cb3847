"""The resident memory of everything a benchmark started, read from /proc (Linux only).

A snapshot is every process's parent, session and RSS, from `/proc/<pid>/stat`. The stack
is this process (which also serves the local fleet's gRPC stand-ins), its descendants (NATS,
the daemon, the code servers it starts, their run workers, a webserver), and anything left in
a session one of them leads: `DagsterProcesses` and `NatsServer` start theirs in new
sessions, so a run worker whose parent died still counts. RSS counts a page shared by two
processes twice (an upper bound, not PSS). `PeakMemory` samples the sum in a thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
SAMPLE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    pid: int
    ppid: int
    session: int
    rss_bytes: int


def parse_stat(text: str, page_size: int) -> ProcessMemory:
    """One `/proc/<pid>/stat` line. The command name, in parentheses, may hold spaces and
    parentheses itself, so the fields are counted after its last `)` (proc(5))."""
    pid, _, rest = text.partition(" (")
    fields = rest.rpartition(")")[2].split()
    # After the name: state(3) ppid(4) pgrp(5) session(6) ... rss(24), in pages.
    return ProcessMemory(
        pid=int(pid),
        ppid=int(fields[1]),
        session=int(fields[3]),
        rss_bytes=int(fields[21]) * page_size,
    )


def read_processes(proc: Path = PROC) -> list[ProcessMemory]:
    page_size = os.sysconf("SC_PAGE_SIZE")
    processes = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            processes.append(parse_stat((entry / "stat").read_text(), page_size))
        except (OSError, ValueError, IndexError):
            continue  # it ended between the listing and the read
    return processes


def stack_members(processes: Iterable[ProcessMemory], root: int) -> list[ProcessMemory]:
    """`root`, its descendants, and the members of any session one of them started (not
    `root`'s own session: the shell or test runner that started it lives there)."""
    everyone = list(processes)
    by_pid = {process.pid: process for process in everyone}
    if root not in by_pid:
        return []
    own_session = by_pid[root].session
    members = {root}
    while True:
        led = {pid for pid in members if by_pid[pid].session == pid}
        sessions = led - {own_session}
        grown = members | {
            process.pid
            for process in everyone
            if process.ppid in members or process.session in sessions
        }
        if grown == members:
            return [by_pid[pid] for pid in sorted(members)]
        members = grown


def stack_rss(processes: Iterable[ProcessMemory], root: int) -> int:
    return sum(process.rss_bytes for process in stack_members(processes, root))


def memory_supported(proc: Path = PROC) -> str | None:
    """Why the stack's memory cannot be read here (the one line a command prints), or None."""
    if not (proc / "self" / "stat").is_file():
        return f"peak memory is read from {proc}/<pid>/stat, which only Linux has"
    return None


class PeakMemory:
    """Samples the stack's summed RSS every `interval` seconds in a daemon thread, from
    `start()` to `stop()` (or within `with sampling()`); `take_peak()` returns the highest
    sum since its last call (the window of one phase) and starts a new window."""

    def __init__(self, root: int | None = None, interval: float = SAMPLE_SECONDS) -> None:
        self.root = os.getpid() if root is None else root
        self.interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def sample(self) -> int:
        total = stack_rss(read_processes(), self.root)
        with self._lock:
            self._peak = max(self._peak, total)
        return total

    def take_peak(self) -> int:
        self.sample()
        with self._lock:
            peak, self._peak = self._peak, 0
        return peak

    def peak_so_far(self) -> int:
        with self._lock:
            return self._peak

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.sample()

    def start(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()


@contextmanager
def sampling(root: int | None = None, interval: float = SAMPLE_SECONDS) -> Iterator[PeakMemory]:
    memory = PeakMemory(root, interval).start()
    try:
        yield memory
    finally:
        memory.stop()
