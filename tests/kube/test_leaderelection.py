"""kube.leaderelection against the real API server: never two leaders, fast takeover.

Timing used throughout (seconds): lease_duration 2.0, renew_deadline 1.5, retry_period
0.25. A sampler thread reads both contenders' ``is_leader`` about every millisecond; an
overlap is counted only when one contender reads True before *and* after the other
reads True, so sampler scheduling delays cannot fake one.

Cases: a clean stop releases the lease (takeover within about one retry period); a
leader whose API calls hang steps down on its own clock before the follower may take
over; a leader process killed with SIGKILL is replaced after about lease_duration.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kube import crud, resources
from kube.leaderelection import JITTER_FACTOR, LeaderElectionConfig, LeaderElector
from kube.testing import await_condition, temporary_namespace

pytestmark = pytest.mark.kube

LEASE = 2.0
RENEW = 1.5
RETRY = 0.25


def config(namespace: str, identity: str) -> LeaderElectionConfig:
    return LeaderElectionConfig(
        name="gateway",
        namespace=namespace,
        identity=identity,
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
    )


class CountingElector(LeaderElector):
    """Counts its attempts at the lease, so a test can wait until a contender has tried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts = 0

    def _try_acquire_or_renew(self) -> bool:
        self.attempts += 1
        return super()._try_acquire_or_renew()


class Contender:
    """A LeaderElector plus a log of its callbacks, with monotonic timestamps."""

    def __init__(self, api_client: Any, cfg: LeaderElectionConfig,
                 cls: type = CountingElector):
        self.log: list[tuple[str, float, str]] = []
        self.elector: LeaderElector = cls(
            api_client,
            cfg,
            on_started_leading=lambda: self._note("started"),
            on_stopped_leading=lambda: self._note("stopped"),
            on_new_leader=lambda identity: self._note("new-leader", identity),
        )

    def _note(self, what: str, detail: str = "") -> None:
        self.log.append((what, time.monotonic(), detail))

    def calls(self, what: str) -> list[tuple[str, float, str]]:
        return [entry for entry in self.log if entry[0] == what]


class OverlapSampler:
    """Samples is_leader of two electors continuously; records overlaps and transitions."""

    def __init__(self, a: LeaderElector, b: LeaderElector) -> None:
        self.a, self.b = a, b
        self.samples = 0
        self.overlaps: list[float] = []
        self.leaders: list[tuple[float, str]] = []  # (time, "a" | "b" | "") on change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        current = None
        while not self._stop.is_set():
            a1, b1, a2, b2 = (
                self.a.is_leader,
                self.b.is_leader,
                self.a.is_leader,
                self.b.is_leader,
            )
            now = time.monotonic()
            if (a1 and b1 and a2) or (b1 and a2 and b2):
                self.overlaps.append(now)
            leader = "a" if a1 and a2 else "b" if b1 and b2 else ""
            if leader != current:
                self.leaders.append((now, leader))
                current = leader
            self.samples += 1
            time.sleep(0.001)

    def __enter__(self) -> OverlapSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


@contextlib.contextmanager
def stopping(*electors: LeaderElector) -> Iterator[None]:
    """Stop every elector on the way out, even when the test failed half-way."""
    try:
        yield
    finally:
        for elector in electors:
            if isinstance(elector, HangingElector):
                elector.hung.clear()
            elector.stop(timeout=5)


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    with temporary_namespace(api_client, "le") as name:
        yield name


def lease_spec(api_client: Any, namespace: str) -> dict[str, Any]:
    lease = crud.ResourceClient(api_client, resources.LEASES).get("gateway", namespace=namespace)
    spec: dict[str, Any] = lease["spec"]
    return spec


def await_renewals(api_client: Any, namespace: str, holder: str, count: int) -> None:
    """Wait until ``holder`` has renewed the lease ``count`` more times (new renewTimes)."""
    seen: set[str] = set()

    def renewed() -> bool:
        spec = lease_spec(api_client, namespace)
        if spec.get("holderIdentity") == holder:
            seen.add(str(spec.get("renewTime")))
        return len(seen) > count

    await_condition(renewed, timeout=count * RETRY * JITTER_FACTOR + 5,
                    message=lambda: f"{count} renewals by {holder}, saw {len(seen) - 1}")


def await_attempts(elector: LeaderElector, count: int, what: str) -> None:
    """Wait until ``elector`` (a CountingElector) has tried for the lease ``count`` more
    times."""
    assert isinstance(elector, CountingElector)
    target = elector.attempts + count
    await_condition(lambda: elector.attempts >= target, timeout=count * RETRY * 2 + 5,
                    message=f"{count} attempts at the lease by {what}")


def await_one_leader(a: LeaderElector, b: LeaderElector) -> tuple[LeaderElector, LeaderElector]:
    await_condition(lambda: a.is_leader or b.is_leader, timeout=10, message="a leader")
    return (a, b) if a.is_leader else (b, a)


def test_one_leader_and_fast_takeover_after_release(api_client: Any, namespace: str) -> None:
    a = Contender(api_client, config(namespace, "a"))
    b = Contender(api_client, config(namespace, "b"))
    with stopping(a.elector, b.elector), OverlapSampler(a.elector, b.elector) as sampler:
        a.elector.start()
        b.elector.start()
        leader, follower = await_one_leader(a.elector, b.elector)
        # Several renew rounds with both contending: the leader renews, the follower
        # keeps trying.
        await_renewals(api_client, namespace, leader.config.identity, 8)
        await_attempts(follower, 4, "the follower")
        assert leader.is_leader and not follower.is_leader
        assert follower.leader_identity == leader.config.identity

        stopped_at = time.monotonic()
        leader.stop()
        assert not leader.is_leader
        await_condition(lambda: follower.is_leader, timeout=LEASE + 2, message="takeover")
        takeover = time.monotonic() - stopped_at
        follower.stop()
    print(
        f"\ntakeover after a clean stop: {takeover:.3f}s "
        f"(lease_duration {LEASE}s); {sampler.samples} samples, {len(sampler.overlaps)} overlaps"
    )
    assert sampler.overlaps == []
    assert takeover < RETRY * JITTER_FACTOR + 1.0, "the released lease is taken at once"
    first, second = (a, b) if leader is a.elector else (b, a)
    assert [entry[0] for entry in first.log if entry[0] != "new-leader"] == [
        "started",
        "stopped",
    ]
    assert [entry[2] for entry in second.calls("new-leader")][-1] == second.elector.config.identity
    spec = lease_spec(api_client, namespace)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1, spec
    assert spec["leaseTransitions"] >= 1


class HangingElector(CountingElector):
    """Its API calls hang while ``hung`` is set, like a leader cut off from the server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hung = threading.Event()
        self.last_success = 0.0

    def _try_acquire_or_renew(self) -> bool:
        if self.hung.is_set():
            while self.hung.is_set():
                time.sleep(0.01)
            return False
        started = time.monotonic()
        won = super()._try_acquire_or_renew()
        if won:
            self.last_success = started
        return won


def test_hung_leader_steps_down_before_the_follower_takes_over(
    api_client: Any, namespace: str
) -> None:
    a = Contender(api_client, config(namespace, "a"), HangingElector)
    b = Contender(api_client, config(namespace, "b"))
    hanging = a.elector
    assert isinstance(hanging, HangingElector)
    with stopping(hanging, b.elector), OverlapSampler(hanging, b.elector) as sampler:
        hanging.start()
        await_condition(lambda: hanging.is_leader, timeout=10, message="a leads")
        b.elector.start()
        await_condition(lambda: b.elector.leader_identity == "a", message="b sees a")

        hung_at = time.monotonic()
        hanging.hung.set()
        await_condition(lambda: not hanging.is_leader, timeout=RENEW + 1, message="a steps down")
        stepped_down = time.monotonic()
        await_condition(lambda: b.elector.is_leader, timeout=LEASE + 3, message="b takes over")
        took_over = time.monotonic()
        assert not a.calls("stopped"), "a is stuck in its API call, yet no longer leads"

        hanging.hung.clear()
        await_condition(lambda: a.calls("stopped"), timeout=3, message="a notices")
        # A must not win the lease back while b renews it, though it tries again.
        await_attempts(hanging, 2, "a, answering again")
        await_renewals(api_client, namespace, "b", 4)
        assert b.elector.is_leader and not hanging.is_leader
        hanging.stop()
        b.elector.stop()
    last_renew = hanging.last_success
    print(
        f"\nhung leader: stepped down {stepped_down - last_renew:.3f}s after its last renew "
        f"(renew_deadline {RENEW}s); follower took over {took_over - last_renew:.3f}s after it "
        f"(lease_duration {LEASE}s); gap {took_over - stepped_down:.3f}s; "
        f"{sampler.samples} samples"
    )
    assert sampler.overlaps == []
    assert stepped_down - last_renew <= RENEW + 0.25
    assert stepped_down - hung_at <= RENEW + 0.25
    assert took_over - last_renew >= LEASE - 0.05, "no takeover before the lease could expire"
    assert took_over > stepped_down


CONTENDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from kube.client import new_api_client
    from kube.leaderelection import LeaderElectionConfig, LeaderElector

    kubeconfig, namespace, identity, lease, renew, retry = sys.argv[1:]
    cfg = LeaderElectionConfig(
        name="gateway", namespace=namespace, identity=identity,
        lease_duration=float(lease), renew_deadline=float(renew), retry_period=float(retry),
    )
    LeaderElector(
        new_api_client(Path(kubeconfig)), cfg,
        on_started_leading=lambda: print("LEADING", flush=True),
    ).run()
    """
)


def test_killed_leader_is_replaced_after_lease_duration(
    api_client: Any, control_plane: Any, namespace: str
) -> None:
    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CONTENDER_SCRIPT,
            str(control_plane.kubeconfig),
            namespace,
            "victim",
            str(LEASE),
            str(RENEW),
            str(RETRY),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    follower = Contender(api_client, config(namespace, "follower"))
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "LEADING"
        follower.elector.start()
        await_condition(lambda: follower.elector.leader_identity == "victim", message="victim")
        renew_seen = lease_spec(api_client, namespace)["renewTime"]
        await_condition(
            lambda: lease_spec(api_client, namespace)["renewTime"] != renew_seen,
            message="the victim renewing",
        )
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(5)
        await_condition(
            lambda: follower.elector.is_leader, timeout=LEASE + 5, message="follower takeover"
        )
        takeover = time.monotonic() - killed_at
        print(f"\ntakeover after SIGKILL of the leader: {takeover:.3f}s (lease_duration {LEASE}s)")
        assert LEASE - RETRY * JITTER_FACTOR - 0.2 <= takeover <= LEASE + 4 * RETRY + 1.0
        assert lease_spec(api_client, namespace)["holderIdentity"] == "follower"
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(5)
        follower.elector.stop()


def test_an_ineligible_leader_hands_over_at_once_and_stays_out(
        api_client: Any, namespace: str) -> None:
    """A leader whose eligibility check turns False (a gateway cut off its tunnel's
    link) steps down and releases the lease: the follower leads within about one
    retry period, not a lease duration, never both at once; the ineligible one does
    not campaign until it is eligible again."""
    healthy = {"a": threading.Event(), "b": threading.Event()}
    for flag in healthy.values():
        flag.set()

    def contender(name: str) -> Contender:
        c = Contender(api_client, config(namespace, name))
        c.elector = CountingElector(
            api_client, config(namespace, name),
            on_started_leading=lambda: c._note("started"),
            on_stopped_leading=lambda: c._note("stopped"),
            eligible=healthy[name].is_set)
        return c

    a, b = contender("a"), contender("b")
    with stopping(a.elector, b.elector), OverlapSampler(a.elector, b.elector) as sampler:
        a.elector.start()
        b.elector.start()
        leader, follower = await_one_leader(a.elector, b.elector)
        await_renewals(api_client, namespace, leader.config.identity, 2)
        cut_at = time.monotonic()
        healthy[leader.config.identity].clear()
        await_condition(lambda: follower.is_leader, timeout=LEASE + 2, message="handover")
        handover = time.monotonic() - cut_at
        assert not leader.is_leader
        await_renewals(api_client, namespace, follower.config.identity, 4)
        assert not leader.is_leader, "an ineligible contender took the lease back"
        healthy[leader.config.identity].set()
        follower.stop()  # released: the healed one may lead again
        await_condition(lambda: leader.is_leader, timeout=LEASE + 2, message="back")
    print(f"\nhandover after the leader turned ineligible: {handover:.3f}s "
          f"(lease_duration {LEASE}s, retry_period {RETRY}s)")
    assert sampler.overlaps == []
    assert handover < LEASE, "released, not waited out"


def test_a_sub_second_lease_is_waited_out_at_its_own_length() -> None:
    """A Lease records whole seconds; a follower configured like the holder (its
    duration rounds up to the record) waits its own 0.6 s, any other record in full."""
    from kube.leaderelection import LeaderElectionRecord

    cfg = LeaderElectionConfig(name="gateway", namespace="x", identity="follower",
                               lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    elector = LeaderElector(None, cfg)  # type: ignore[arg-type]  # no request is made

    def held(seconds: int, observed_ago: float) -> bool:
        record = LeaderElectionRecord("leader", seconds, None, "t", 0)
        elector._observed, elector._observed_time = record, time.monotonic() - observed_ago
        return elector._held_by_other(record)

    assert held(1, 0.5) and not held(1, 0.7)  # like us: 0.6 s
    assert held(2, 1.5) and not held(2, 2.1)  # someone else's 2 s: in full


def test_a_leader_renews_in_one_write_and_reads_again_after_another_writer(
        api_client: Any, namespace: str) -> None:
    """Renewals are one conditional PUT each, no read: a loaded API server must be
    twice as slow to depose a healthy leader. A write by someone else in between
    (here a label added by hand) makes the next renewal read the Lease again; the
    leader keeps leading, in the same term."""
    elector = LeaderElector(api_client, config(namespace, "a"))
    reads: list[str] = []
    get = elector._leases.get

    def counted_get(name: str, **kwargs: Any) -> dict[str, Any]:
        reads.append(name)
        return get(name, **kwargs)

    elector._leases.get = counted_get  # type: ignore[method-assign]
    with stopping(elector):
        elector.start()
        await_condition(lambda: elector.is_leader, timeout=10, message="a leads")
        await_renewals(api_client, namespace, "a", 1)
        before = len(reads)
        await_renewals(api_client, namespace, "a", 4)
        assert len(reads) == before, "renewals read the Lease"
        leases = crud.ResourceClient(api_client, resources.LEASES)
        lease = leases.get("gateway", namespace=namespace)
        lease["metadata"].setdefault("labels", {})["touched"] = "by-hand"
        leases.update(lease, namespace=namespace)
        await_renewals(api_client, namespace, "a", 2)
        assert len(reads) > before, "a renewal after another write read the Lease again"
        assert elector.is_leader
        assert lease_spec(api_client, namespace).get("leaseTransitions", 0) == 0
