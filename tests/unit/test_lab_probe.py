"""The failover probes' verdicts (lab/probe.py): gap and recovery from the probe
results, each (start time, answered). The event at 5 s."""

from __future__ import annotations

from lab.probe import PROBE_TIMEOUT_S, failures_around, gap_after, recovered

EVENT = 5.0


def probes(failing: tuple[float, float], end: float = 10.0,
           step: float = 0.05) -> list[tuple[float, bool]]:
    out, t = [], 0.0
    while t < end:
        out.append((round(t, 3), not failing[0] <= t < failing[1]))
        t += step
    return out


def test_a_probe_that_started_just_before_the_event_and_met_it_does_not_count_against(
) -> None:
    results = probes(failing=(EVENT - PROBE_TIMEOUT_S, EVENT + 0.5))
    assert recovered(results, EVENT)
    assert PROBE_TIMEOUT_S + 0.5 <= gap_after(results, EVENT) < PROBE_TIMEOUT_S + 0.6


def test_a_path_broken_well_before_the_event_or_still_broken_at_the_end_is_not_recovered(
) -> None:
    assert not recovered(probes(failing=(EVENT - 3 * PROBE_TIMEOUT_S, EVENT + 0.5)), EVENT)
    assert not recovered(probes(failing=(EVENT + 0.1, 10.0)), EVENT)


def test_failed_probes_are_told_as_runs_from_the_event() -> None:
    results = [*probes(failing=(EVENT - 0.01, EVENT + 0.14)), (EVENT + 6.0, False)]
    assert failures_around(results, EVENT) == (
        "4 of 201 probes failed, at +0.00..+0.10 (3), +6.00 s from the event; "
        "the probes ran -5.00..+6.00 s")
    assert failures_around(probes(failing=(0, 0)), EVENT).startswith("0 of 200 probes failed;")
