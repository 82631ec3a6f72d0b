"""Stopping the userspace daemon a cable driver runs (wireguard-go, charon) by PID.

A driver starts its daemon as a child, or adopts one a previous engine started (its
PID from a file beside the daemon's socket); either way it stops exactly that PID:
SIGTERM, then SIGKILL when it lingers, reaping it when it is our child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (reaped here when it is our child)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float, child: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether `pid` (our `child`, when it is that one) ends within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.pid == pid:
            if child.poll() is not None:
                return True
        elif process_gone(pid):
            return True
        time.sleep(0.05)
    return False


def stop(pid: int | None, child: subprocess.Popen[bytes] | None) -> None:
    """Stop daemon `pid` (SIGTERM, SIGKILL after 5 s) and reap `child`, if any."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, 5.0, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 2.0, child)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(1)
