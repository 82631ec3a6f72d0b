"""The one interface every datapath backend implements, beside the intent it takes.

Controllers hand a whole `NatIntent` to `apply`; the backend works out the
difference to what it installed and changes only that, atomically. `full=True`
asks it to re-read the kernel and converge (start-up, drift repair). A backend
refuses an unsound intent (`IntentRejected`) before touching the kernel,
keeping the last good state.

It lives on the intent's side so that the controllers and the agent's
composition root depend on it without importing any backend. Like the intent,
it imports no kernel or API library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from globalnet.intent import IntentDiff, NatIntent


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
    """A backend realising NAT intent (`datapath.nftables`, `datapath.recording`)."""

    name: str

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult: ...

    def cleanup(self) -> None: ...
