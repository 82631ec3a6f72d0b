"""Restart and failover safety of the Globalnet controllers (real API server).

Address conventions: cluster "west" owns 242.5.0.0/24. Between managers, the
API server is the only memory: whatever a new manager knows it read from status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from datapath.recording import RecordingDatapath
from globalnet.controllers import reasons as r
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager, Term
from globalnet.intent import NatIntent
from kube import crud, names, resources
from kube.testing import await_condition, temporary_namespace

pytestmark = pytest.mark.kube

GLOBAL_CIDR = "242.5.0.0/24"


def config(identity: str) -> GlobalnetConfig:
    return GlobalnetConfig(
        cluster_id="west", global_cidr=GLOBAL_CIDR, local_cidrs=("10.244.0.0/16", "10.96.0.0/16"),
        namespace="globalnet-restart", identity=identity, lease_duration=2.0,
        renew_deadline=1.5, retry_period=0.25, debounce=0.02,
    )


@contextlib.contextmanager
def manager(api: Any, identity: str) -> Iterator[tuple[GlobalnetManager, RecordingDatapath]]:
    dp = RecordingDatapath()
    mgr = GlobalnetManager(api, config(identity), dp)
    mgr.start()
    try:
        yield mgr, dp
    finally:
        mgr.stop()


def settled(term: Term, timeout: float = 20) -> NatIntent:
    """The applied intent once no event has changed it for a while."""
    last: NatIntent | None = None

    def stable() -> NatIntent | None:
        nonlocal last
        now = term.publisher.applied
        if now is not None and now == last and term.publisher.current == now and all(
            c.queue.waiting() == 0 for c in term.controllers
        ):
            return now
        last = now
        return None

    return await_condition(stable, timeout=timeout, interval=0.3, message="a settled intent")


@pytest.fixture
def ns(api_client: Any) -> Iterator[str]:
    with temporary_namespace(api_client, "rs") as name:
        yield name


def populate(api: Any, ns: str) -> None:
    c = lambda res: crud.ResourceClient(api, res)  # noqa: E731
    services, exports, pods, geips = (c(resources.SERVICES), c(resources.SERVICE_EXPORTS),
                                      c(resources.PODS), c(resources.GLOBAL_EGRESS_IPS))
    for i in range(2):
        pods.create({"metadata": {"name": f"db-{i}", "namespace": ns, "labels": {"app": "db"}},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}})
        pods.patch_status(f"db-{i}", {"status": {
            "phase": "Running", "podIP": f"10.244.7.{i + 1}",
            "conditions": [{"type": "Ready", "status": "True"}]}}, namespace=ns)
    for name, spec in (("web", {"selector": {"app": "web"}}),
                       ("db", {"clusterIP": "None", "selector": {"app": "db"}})):
        services.create({"metadata": {"name": name, "namespace": ns},
                         "spec": {**spec, "ports": [{"port": 80}]}})
        exports.create({"metadata": {"name": name, "namespace": ns}})
    geips.create({"metadata": {"name": "egress", "namespace": ns}, "spec": {"numberOfIPs": 3}})


def lease_spec(api: Any, mgr: GlobalnetManager) -> dict[str, Any]:
    """The spec of the Lease `mgr` campaigns for."""
    cfg = mgr.elector.config
    lease = crud.ResourceClient(api, resources.LEASES).get(cfg.name, namespace=cfg.namespace)
    return dict(lease.get("spec") or {})


def statuses(api: Any, ns: str) -> dict[str, Any]:
    giips = crud.ResourceClient(api, resources.GLOBAL_INGRESS_IPS).list(namespace=ns).items
    geips = crud.ResourceClient(api, resources.GLOBAL_EGRESS_IPS).list(namespace=ns).items
    return {
        **{f"in/{g['metadata']['name']}": g.get("status", {}).get("allocatedIP") for g in giips},
        **{f"eg/{g['metadata']['name']}": g.get("status", {}).get("allocatedIPs") for g in geips},
    }


def test_a_restarted_controller_keeps_every_ip_and_derives_the_same_intent(
    api_client: Any, ns: str
) -> None:
    populate(api_client, ns)
    with manager(api_client, "first") as (mgr, _):
        term = mgr.wait_for_term(30)
        await_condition(lambda: len([v for v in statuses(api_client, ns).values() if v]) == 4,
                        timeout=20, message="all four allocations")
        before_intent = settled(term)
        before = statuses(api_client, ns)
    with manager(api_client, "second") as (mgr, dp):
        term = mgr.wait_for_term(30)
        after_intent = settled(term)
        assert statuses(api_client, ns) == before
        assert after_intent == before_intent
        assert dp.current == before_intent


def test_the_follower_takes_over_with_the_same_allocations(api_client: Any, ns: str) -> None:
    populate(api_client, ns)
    with manager(api_client, "leader") as (leader, _):
        term = leader.wait_for_term(30)
        await_condition(lambda: len([v for v in statuses(api_client, ns).values() if v]) == 4,
                        timeout=20, message="all four allocations")
        intent = settled(term)
        before = statuses(api_client, ns)
        lease_at_start = lease_spec(api_client, leader)
        with manager(api_client, "follower") as (follower, _):
            # The follower has read the lease (it names the leader), and the leader went
            # on renewing it twice since: time for the follower to have taken it, had
            # it been willing to.
            await_condition(lambda: follower.elector.leader_identity == "leader", timeout=10,
                            message="the follower seeing the leader's lease")
            renewals: set[str] = set()

            def renewed_twice() -> bool:
                spec = lease_spec(api_client, leader)
                if spec.get("holderIdentity") == "leader":
                    renewals.add(str(spec.get("renewTime")))
                return len(renewals) > 2

            await_condition(renewed_twice, timeout=10, message="two renewals by the leader")
            lease = lease_spec(api_client, leader)
            assert (lease["holderIdentity"], lease.get("leaseTransitions")) == (
                "leader", lease_at_start.get("leaseTransitions")), lease
            assert follower.term is None and not follower.elector.is_leader
            leader.stop()
            term2 = follower.wait_for_term(10)
            assert settled(term2) == intent
            assert statuses(api_client, ns) == before


def test_stale_ingress_ips_are_removed_at_start(api_client: Any, ns: str) -> None:
    giips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    stale = giips.create({
        "metadata": {"name": "ghost", "namespace": ns,
                     "labels": {names.SERVICE_REF_LABEL: "ghost"}},
        "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": "ghost"}},
    })
    stale["status"] = {"allocatedIP": "242.5.0.200"}
    giips.update_status(stale)
    with manager(api_client, "cleaner") as (mgr, _):
        term = mgr.wait_for_term(30)
        await_condition(lambda: giips.get_or_none("ghost", namespace=ns) is None, timeout=20,
                        message="stale GlobalIngressIP removed")
        await_condition(lambda: term.pool.holder("242.5.0.200") is None, timeout=10,
                        message="its address released")


def test_conflicting_records_are_detected_reported_and_fixed(api_client: Any, ns: str) -> None:
    services = crud.ResourceClient(api_client, resources.SERVICES)
    exports = crud.ResourceClient(api_client, resources.SERVICE_EXPORTS)
    giips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    for name in ("one", "two"):
        services.create({"metadata": {"name": name, "namespace": ns},
                         "spec": {"ports": [{"port": 80}]}})
        exports.create({"metadata": {"name": name, "namespace": ns}})
        obj = giips.create({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {names.SERVICE_REF_LABEL: name}},
            "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": name}},
        })
        # Both records claim the same address, as after a split-brain bug.
        obj["status"] = {"allocatedIP": "242.5.0.77"}
        giips.update_status(obj)
    with manager(api_client, "judge") as (mgr, _):
        mgr.wait_for_term(30)

        def resolved() -> dict[str, Any] | None:
            objs = {n: giips.get(n, namespace=ns) for n in ("one", "two")}
            ips = {n: o.get("status", {}).get("allocatedIP") for n, o in objs.items()}
            return objs if ips["one"] != ips["two"] and all(ips.values()) else None

        objs = await_condition(resolved, timeout=20, message="distinct addresses")
    # The older record keeps the address; the other is reallocated and says why.
    assert objs["one"]["status"]["allocatedIP"] == "242.5.0.77"
    cond = next(c for c in objs["two"]["status"]["conditions"] if c["type"] == r.ALLOCATED)
    assert cond["reason"] == r.CONFLICTING_ALLOCATION
    assert "already held by GlobalIngressIP/" in cond["message"]
