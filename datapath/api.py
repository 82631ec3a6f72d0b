"""The one interface every datapath backend implements, and a recording backend.

Controllers hand a whole `NatIntent` to `apply`; the backend works out the
difference to what it installed and changes only that, atomically. `full=True`
asks it to re-read the kernel and converge (start-up, drift repair). A backend
refuses an invalid intent before touching the kernel, keeping the last good
state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from globalnet.intent import IntentDiff, NatIntent, diff_intents


class IntentRejected(ValueError):
    """The intent is unsound (outside the global CIDR, duplicates, conflicts)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ApplyResult:
    """What one `apply` changed."""

    diff: IntentDiff
    operations: int


class Datapath(Protocol):
    """A backend realising NAT intent (nftables, eBPF, recording)."""

    name: str

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult: ...

    def cleanup(self) -> None: ...


class RecordingDatapath:
    """In-memory backend for controller tests: keeps every applied intent.

    `fail_next(n)` makes the next n applies raise, to test how controllers
    report and retry datapath failures.
    """

    name = "recording"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: NatIntent | None = None
        self.history: list[NatIntent] = []
        self._failures = 0

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._failures = count

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult:
        errors = intent.validate()
        if errors:
            raise IntentRejected(errors)
        with self._lock:
            if self._failures:
                self._failures -= 1
                raise RuntimeError("injected datapath failure")
            diff = diff_intents(None if full else self.current, intent)
            self.current = intent
            self.history.append(intent)
            return ApplyResult(diff=diff, operations=diff.size)

    def cleanup(self) -> None:
        with self._lock:
            self.current = None
