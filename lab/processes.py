"""Processes the lab starts, tracked by PID so they can be stopped from anywhere.

A lab outlives the `gnctl lab up` that started it, so its processes are not our
children when `lab down` runs. We record each PID with its kernel start time
(field 22 of /proc/PID/stat): a PID reused by an unrelated process after a
crash then never matches, and we never signal a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import netns


@dataclass(frozen=True)
class ManagedProcess:
    """One process the lab owns."""

    name: str
    pid: int
    start_time: int
    log: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ManagedProcess:
        return cls(
            name=str(data["name"]), pid=int(str(data["pid"])),
            start_time=int(str(data["start_time"])), log=str(data["log"]),
        )


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_alive(proc: ManagedProcess) -> bool:
    return _start_time(proc.pid) == proc.start_time


def spawn(
    name: str,
    argv: list[str],
    *,
    log_path: Path,
    in_netns: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ManagedProcess, subprocess.Popen[bytes]]:
    """Start `argv` detached (own session, output to `log_path`)."""
    if in_netns:
        argv = netns.exec_argv(in_netns, argv)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    started = None
    for _ in range(100):
        started = _start_time(popen.pid)
        if started is not None:
            break
        time.sleep(0.01)
    if started is None:
        raise RuntimeError(f"{name} exited at once; see {log_path}")
    return ManagedProcess(name, popen.pid, started, str(log_path)), popen


def stop(procs: list[ManagedProcess], *, timeout: float = 10.0) -> None:
    """SIGTERM every live process, wait, then SIGKILL what is left."""
    live = [p for p in procs if is_alive(p)]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        _reap()
        live = [p for p in live if is_alive(p)]
        if live:
            time.sleep(0.05)
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        _reap()
        live = [p for p in live if is_alive(p)]
        time.sleep(0.02)


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *,
              timeout: float = 10.0) -> None:
    """SIGTERM a child we started, SIGKILL it if it has not exited within `timeout`."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reap() -> None:
    """Collect exited children so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


def find_by_argument(fragment: str) -> list[ManagedProcess]:
    """Live processes with `fragment` in one of their arguments (not ourselves)."""
    found = []
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(fragment.encode() in a for a in args):
            pid = int(entry.name)
            started = _start_time(pid)
            if started is not None:
                found.append(ManagedProcess(args[0].decode(errors="replace"), pid, started, ""))
    return found


def by_pid(pid: int) -> ManagedProcess | None:
    """A live process by PID (its start time read now), for memory accounting."""
    started = _start_time(pid)
    if started is None:
        return None
    return ManagedProcess(str(pid), pid, started, "")


def tail(path: str, lines: int = 5) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def rss_mb(procs: list[ManagedProcess]) -> float:
    """Resident memory of live processes, in MiB (for the lab benchmark)."""
    total_kb = 0
    for p in procs:
        if not is_alive(p):
            continue
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024
