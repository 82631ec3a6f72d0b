"""Enter a named network namespace for the current thread (setns), and leave it.

The one copy of this in the project: the datapath backends use it to program a
node's namespace, and the lab (which sits above the datapath) reuses it for its
relay, readiness checks and sysctls.

Sockets opened inside the block stay bound to that namespace after it ends:
libnftables 1.0.6 opens its socket when the context is created (checked: a
context made inside a namespace keeps programming that namespace from outside).
The backends still run every command inside the block, so a library that reopens
its socket later would not silently switch namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns {what}: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block with this thread in namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target, f"into {name}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, "back")
    finally:
        os.close(own)


def missing(name: str | None) -> str | None:
    """Why `name` cannot be entered (for a one-line error), or None when it can."""
    if name is None or (NETNS_DIR / name).exists():
        return None
    return f"no network namespace {name!r} under {NETNS_DIR}"
