"""What one check found: a verdict, a line saying what it saw and a hint for what to do.

A FAIL is something broken now (the command exits 1); a WARN something that may
be fine or that could not be checked; a PASS says what was checked, so a table of
passes still tells the user what was looked at.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    group: str  # deployment, connections, globalnet, ...
    name: str  # what was checked, a few words
    verdict: Verdict
    message: str  # what was seen, one line
    hint: str = ""  # what to do about it ("" for a PASS)
    cluster: str = ""  # the cluster (context) it is about; "" for the clusterset


def passed(group: str, name: str, message: str, *, cluster: str = "") -> Check:
    return Check(group, name, Verdict.PASS, message, "", cluster)


def warned(group: str, name: str, message: str, hint: str = "", *,
           cluster: str = "") -> Check:
    return Check(group, name, Verdict.WARN, message, hint, cluster)


def failed(group: str, name: str, message: str, hint: str = "", *,
           cluster: str = "") -> Check:
    return Check(group, name, Verdict.FAIL, message, hint, cluster)


def any_failed(checks: list[Check]) -> bool:
    return any(c.verdict is Verdict.FAIL for c in checks)


def counts(checks: list[Check]) -> dict[str, int]:
    return {v.value: sum(1 for c in checks if c.verdict is v) for v in Verdict}
