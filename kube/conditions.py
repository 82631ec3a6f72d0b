"""Helpers for ``status.conditions`` lists of dict objects (metav1.Condition shape).

Rules (the Kubernetes API conventions): one entry per ``type``; ``lastTransitionTime``
changes only when ``status`` changes, so it tells when the state flipped, not when the
controller last looked; a write is needed only when something changed (``set_condition``
says so). Reason constants belong to the controllers that set them, not here.
"""

from __future__ import annotations

import datetime
from typing import Any

Condition = dict[str, Any]

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with seconds precision, as metav1.Time serialises."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_text(status: str | bool) -> str:
    if isinstance(status, bool):
        return TRUE if status else FALSE
    if status not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return status


def get_condition(conditions: list[Condition] | None, type: str) -> Condition | None:
    for condition in conditions or []:
        if condition.get("type") == type:
            return condition
    return None


def is_condition_true(conditions: list[Condition] | None, type: str) -> bool:
    condition = get_condition(conditions, type)
    return condition is not None and condition.get("status") == TRUE


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: str | bool,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: datetime.datetime | None = None,
) -> bool:
    """Add or update the condition of ``type`` in place; return whether anything changed.

    ``lastTransitionTime`` is set to ``now`` (default: the current UTC time) only for a
    new condition or a changed ``status``.
    """
    status = _status_text(status)
    desired: Condition = {"type": type, "status": status, "reason": reason, "message": message}
    if observed_generation is not None:
        desired["observedGeneration"] = observed_generation
    existing = get_condition(conditions, type)
    stamp = format_time(now or datetime.datetime.now(datetime.UTC))
    if existing is None:
        conditions.append({**desired, "lastTransitionTime": stamp})
        return True
    changed = any(existing.get(key) != value for key, value in desired.items())
    if existing.get("status") != status or "lastTransitionTime" not in existing:
        existing["lastTransitionTime"] = stamp
        changed = True
    existing.update(desired)
    return changed


def remove_condition(conditions: list[Condition], type: str) -> bool:
    """Drop the condition of ``type``; return whether there was one."""
    for index, condition in enumerate(conditions):
        if condition.get("type") == type:
            del conditions[index]
            return True
    return False
