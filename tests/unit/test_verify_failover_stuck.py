"""`gnctl verify`'s gateway-failover suite says where a replacement gateway pod
stuck when none is Ready in time: the step a user looks at next."""

from __future__ import annotations

from verify.failover import _where_stuck


def pod(uid: str, *, phase: str = "Running", deleting: bool = False,
        containers: dict[str, dict[str, dict[str, str]]] | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": f"globalnet-gateway-{uid}", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T20:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [
        {"name": name, "state": state} for name, state in (containers or {}).items()]}}


def test_the_old_pod_still_terminating_is_named() -> None:
    assert _where_stuck([pod("old", deleting=True)], "old") == (
        "the deleted pod globalnet-gateway-old is still terminating")


def test_no_pod_at_all_blames_the_daemonset() -> None:
    assert _where_stuck([], "old") == "the DaemonSet made no new pod"


def test_a_new_pod_shows_its_phase_and_every_containers_state() -> None:
    new = pod("new", phase="Pending", containers={
        "gateway-engine": {"waiting": {"reason": "ContainerCreating"}},
        "globalnet": {"running": {"startedAt": "2026-12-02T20:00:01Z"}}})
    assert _where_stuck([pod("old", deleting=True), new], "old") == (
        "pod globalnet-gateway-new: Pending, gateway-engine waiting (ContainerCreating), "
        "globalnet running")
