"""kube.conditions: status conditions on dict objects, per the API conventions.

The rule under test: ``lastTransitionTime`` moves only when ``status`` changes, and
``set_condition`` reports a change only when a write is needed.
"""

from __future__ import annotations

import datetime

import pytest

from kube import conditions

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def allocated(
    conds: list[conditions.Condition], status: str | bool, reason: str, at: datetime.datetime
) -> bool:
    return conditions.set_condition(
        conds, type="Allocated", status=status, reason=reason, message=f"{reason}!", now=at
    )


def test_new_condition_is_added_with_transition_time() -> None:
    conds: list[conditions.Condition] = []
    assert allocated(conds, "True", "Success", T0)
    assert conds == [
        {
            "type": "Allocated",
            "status": "True",
            "reason": "Success",
            "message": "Success!",
            "lastTransitionTime": "2024-05-01T12:00:00Z",
        }
    ]


def test_same_condition_again_is_no_change() -> None:
    conds: list[conditions.Condition] = []
    allocated(conds, "True", "Success", T0)
    assert not allocated(conds, "True", "Success", T1)
    assert conds[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_reason_change_keeps_transition_time() -> None:
    conds: list[conditions.Condition] = []
    allocated(conds, "False", "IPPoolAllocationFailed", T0)
    assert allocated(conds, "False", "InvalidInput", T1)
    assert conds[0]["reason"] == "InvalidInput"
    assert conds[0]["message"] == "InvalidInput!"
    assert conds[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_status_change_moves_transition_time() -> None:
    conds: list[conditions.Condition] = []
    allocated(conds, False, "IPPoolAllocationFailed", T0)
    assert allocated(conds, True, "Success", T1)
    assert conds[0]["status"] == "True"
    assert conds[0]["lastTransitionTime"] == "2024-05-01T12:05:00Z"
    assert len(conds) == 1


def test_conditions_of_other_types_are_left_alone() -> None:
    conds: list[conditions.Condition] = []
    allocated(conds, True, "Success", T0)
    conditions.set_condition(conds, type="Updated", status="Unknown", reason="Pending", now=T1)
    assert [c["type"] for c in conds] == ["Allocated", "Updated"]
    assert conditions.get_condition(conds, "Updated") == {
        "type": "Updated",
        "status": "Unknown",
        "reason": "Pending",
        "message": "",
        "lastTransitionTime": "2024-05-01T12:05:00Z",
    }
    assert conditions.is_condition_true(conds, "Allocated")
    assert not conditions.is_condition_true(conds, "Updated")
    assert not conditions.is_condition_true(conds, "Missing")
    assert not conditions.is_condition_true(None, "Allocated")
    assert conditions.remove_condition(conds, "Allocated")
    assert not conditions.remove_condition(conds, "Allocated")
    assert [c["type"] for c in conds] == ["Updated"]


def test_observed_generation_counts_as_a_change() -> None:
    conds: list[conditions.Condition] = []
    conditions.set_condition(
        conds, type="Ready", status=True, reason="Ok", observed_generation=1, now=T0
    )
    assert conditions.set_condition(
        conds, type="Ready", status=True, reason="Ok", observed_generation=2, now=T1
    )
    assert conds[0]["observedGeneration"] == 2
    assert conds[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_invalid_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        conditions.set_condition([], type="Ready", status="yes", reason="Ok")


def test_format_time_is_utc_seconds() -> None:
    naive = datetime.datetime(2024, 5, 1, 12, 0, 0, 999999)
    assert conditions.format_time(naive) == "2024-05-01T12:00:00Z"
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert conditions.format_time(datetime.datetime(2024, 5, 1, 14, 0, tzinfo=plus2)) == (
        "2024-05-01T12:00:00Z"
    )


def test_default_now_is_current_time() -> None:
    conds: list[conditions.Condition] = []
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    conditions.set_condition(conds, type="Ready", status=True, reason="Ok")
    stamp = datetime.datetime.strptime(conds[0]["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert stamp.replace(tzinfo=datetime.UTC) >= before
