"""Repair our table when someone else changes it, within a fraction of a second.

`DriftWatcher` listens to the kernel's nftables change events in the backend's
namespace (`netlink.Events`). A committed batch that touched `inet globalnet`
and was not committed by us - or lost events (socket overflow) - makes it call
`backend.resync()`, which reads the table and commits the difference. As a
safety net it also calls `resync()` every `period` seconds; that costs one
generation read when nothing changed.

Why not only poll: comparing 50,000 elements means listing them (about a second
of libnftables CPU); the events tell us when it is worth it. Why not only events:
a watcher that starts after the edit, or misses it, would never look.

For a process without threads of its own, `check_drift()` and `resync()` on the
backend are the whole API; `run_drift_loop` is the same loop in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from datapath.nftables import names
from datapath.nftables.backend import NftablesDatapath
from datapath.nftables.netlink import Commit, Events

log = logging.getLogger(__name__)


def _foreign(backend: NftablesDatapath, commits: list[Commit]) -> bool:
    return any(
        c.touched and c.task not in backend.own_tasks
        and c.generation not in backend.own_generations
        for c in commits
    )


def run_drift_loop(backend: NftablesDatapath, stop: threading.Event, *,
                   interval: float = 0.1, period: float = 30.0,
                   on_repair: Callable[[int], None] | None = None,
                   ready: threading.Event | None = None) -> None:
    """Watch and repair until `stop` is set (see module docstring).

    Subscribes first, then checks once, so an edit made before the loop started
    is repaired too."""
    events = Events(backend.netns, family=names.FAMILY, table=names.TABLE)
    if ready is not None:
        ready.set()
    next_check = time.monotonic()
    try:
        while not stop.is_set():
            commits, lost = events.read(interval)
            due = time.monotonic() >= next_check
            if not (lost or due or _foreign(backend, commits)):
                continue
            next_check = time.monotonic() + period
            try:
                ops = backend.resync()
            except Exception:  # keep watching; the next event or period retries
                log.exception("drift repair of %s failed", names.TABLE_REF)
                continue
            if ops:
                log.warning("repaired drift in %s with %d operations", names.TABLE_REF, ops)
                if on_repair:
                    on_repair(ops)
    finally:
        events.close()


class DriftWatcher:
    """`run_drift_loop` in a daemon thread: `start()`, `stop()`, `repairs` counts fixes."""

    def __init__(self, backend: NftablesDatapath, *, interval: float = 0.1,
                 period: float = 30.0) -> None:
        self.backend = backend
        self.interval = interval
        self.period = period
        self.repairs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _count(self, _ops: int) -> None:
        self.repairs += 1

    def start(self) -> DriftWatcher:
        def run() -> None:
            run_drift_loop(self.backend, self._stop, interval=self.interval,
                           period=self.period, on_repair=self._count, ready=self._ready)

        self._thread = threading.Thread(target=run, name="nft-drift", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> DriftWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
