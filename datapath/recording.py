"""A backend that keeps the intent in memory and touches no kernel state.

For controller tests and dry runs (`globalnet.agent --datapath recording`): it
records every applied intent and can be told to fail, so tests can check how
controllers report and retry datapath failures.
"""

from __future__ import annotations

import threading

from globalnet.datapath_api import ApplyResult, IntentRejected
from globalnet.intent import NatIntent, diff_intents
from globalnet.intent_validator import IncrementalValidator


class RecordingDatapath:
    """In-memory backend: `current` is the last applied intent, `history` all of them.

    `fail_next(n)` makes the next n applies of a sound intent raise; a test reads
    `pending_failures` to check that the failures it injected were consumed.
    """

    name = "recording"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: NatIntent | None = None
        self.history: list[NatIntent] = []
        self._failures = 0
        self._validator = IncrementalValidator()

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._failures = count

    @property
    def pending_failures(self) -> int:
        """Injected failures not yet raised by an apply."""
        with self._lock:
            return self._failures

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult:
        with self._lock:
            checked = self._validator.check(intent, full=full)
            if not checked.sound:
                raise IntentRejected(list(checked.errors))
            if self._failures:
                self._failures -= 1
                raise RuntimeError("injected datapath failure")
            diff = diff_intents(None if full else self.current, intent)
            self._validator.commit(checked)
            self.current = intent
            self.history.append(intent)
            return ApplyResult(diff=diff, operations=diff.size)

    def cleanup(self) -> None:
        with self._lock:
            self.current = None
            self._validator.reset()
