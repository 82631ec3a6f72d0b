"""The failover probes' verdicts (lab/probe.py): gap and recovery from the probe
results, each (start time, answered)."""

from __future__ import annotations

from lab.probe import PROBE_TIMEOUT_S, gap_after, recovered


def probes(start: float, end: float, failing: tuple[float, float] = (0.0, 0.0),
           step: float = 0.05) -> list[tuple[float, bool]]:
    out, t = [], start
    while t < end:
        out.append((round(t, 3), not failing[0] <= t < failing[1]))
        t += step
    return out


def test_a_probe_that_started_just_before_the_event_and_met_it_does_not_count_against(
) -> None:
    results = probes(0.0, 6.0, failing=(2.5 - PROBE_TIMEOUT_S, 3.2))
    assert recovered(results, 2.5)
    assert 0.7 < gap_after(results, 2.5) < 1.3


def test_a_path_broken_before_the_event_or_still_broken_at_the_end_is_not_recovered(
) -> None:
    assert not recovered(probes(0.0, 6.0, failing=(1.0, 3.2)), 2.5)
    assert not recovered(probes(0.0, 6.0, failing=(2.6, 6.0)), 2.5)
