"""One row per check: what was checked, where from, and what came of it.

A check's outcome is PASS, FAIL or SKIP (it could not run here: a cluster without
a non-gateway node, a suite's check whose precondition failed); only FAIL makes
`gnctl verify` exit non-zero.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class Outcome(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Result:
    suite: str
    check: str
    path: str  # "c1 -> c2", or the cluster a check ran in
    node: str  # where the client ran: "gateway n0", "non-gateway n1", "-"
    outcome: Outcome
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": str(self.outcome)}


def passed(results: list[Result]) -> bool:
    return not any(r.outcome is Outcome.FAIL for r in results)


def counts(results: list[Result]) -> dict[str, int]:
    return {str(k): sum(1 for r in results if r.outcome is k) for k in Outcome}
