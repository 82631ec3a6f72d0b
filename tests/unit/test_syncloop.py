"""kube.syncloop: pokes coalesce into syncs, a failing sync is retried until it passes."""

from __future__ import annotations

import threading

from kube.syncloop import SyncLoop
from kube.testing import await_condition


def test_a_first_sync_at_start_and_one_per_poke_burst() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def sync() -> None:
        calls.append(1)
        gate.wait(5)

    loop = SyncLoop("test", sync)
    loop.start()
    try:
        await_condition(lambda: len(calls) == 1, timeout=5, message="the first sync")
        for _ in range(10):  # while the first runs: one more sync, not ten
            loop.poke()
        gate.set()
        await_condition(lambda: len(calls) == 2, timeout=5, message="one more sync")
    finally:
        loop.stop()
    assert len(calls) == 2


def test_a_failing_sync_is_retried_and_counted() -> None:
    attempts: list[int] = []
    errors: list[int] = []

    def sync() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("the API server is away")

    loop = SyncLoop("test", sync, on_error=lambda: errors.append(1))
    loop.start()
    try:
        await_condition(lambda: len(attempts) == 3, timeout=5, message="a third attempt")
    finally:
        loop.stop()
    assert len(errors) == 2
