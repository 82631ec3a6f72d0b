"""The pure parts of `gnctl diagnose`: reading CoreDNS's and kube-proxy's
configuration, and which CIDRs collide.

Addresses: documentation-style private ranges only (10.244/16 pods, 10.96/16
services, 242.x global CIDRs); nothing is sent anywhere.
"""

from __future__ import annotations

import pytest

from ops.diagnose import discovery, globalnet, kubeproxy
from ops.diagnose.model import Verdict

COREFILE = """.:53 {
    errors
    forward . /etc/resolv.conf
}
clusterset.local:53 {
    errors
    forward . 10.96.0.10
}
"""


def test_the_clusterset_forward_target_is_read_from_its_own_block() -> None:
    assert discovery.forward_targets(COREFILE) == ["10.96.0.10"]
    assert discovery.forward_targets(COREFILE.split("clusterset")[0]) is None


@pytest.mark.parametrize(("argv", "mode"), [
    (["kube-proxy", "--proxy-mode", "ipvs"], "ipvs"),
    (["kube-proxy", "--proxy-mode=nftables"], "nftables"),
    (["kube-proxy", "--v=2"], None),
])
def test_the_mode_flag_in_both_spellings(argv: list[str], mode: str | None) -> None:
    assert kubeproxy.mode_of_flags(argv) == mode


def test_an_empty_mode_in_the_config_is_iptables() -> None:
    assert kubeproxy.mode_of_config("kind: KubeProxyConfiguration\nmode: ''\n") == "iptables"
    assert kubeproxy.mode_of_config("kind: KubeProxyConfiguration\nmode: ipvs\n") == "ipvs"
    assert kubeproxy.mode_of_config("kind: Other\n") is None


def test_ipvs_warns_and_iptables_passes() -> None:
    assert kubeproxy.verdict("ipvs", "x", cluster="c1").verdict is Verdict.WARN
    assert kubeproxy.verdict("iptables", "x", cluster="c1").verdict is Verdict.PASS
    assert kubeproxy.verdict("userspace", "x", cluster="c1").verdict is Verdict.FAIL


def _member(cluster_id: str, global_cidr: str | None) -> globalnet.Member:
    return globalnet.Member(cluster_id, ("10.244.0.0/16",), ("10.96.0.0/16",),
                            (global_cidr,) if global_cidr else ())


def test_same_local_cidrs_fail_only_where_globalnet_is_off() -> None:
    on = [_member("a", "242.1.0.0/16"), _member("b", "242.2.0.0/16")]
    by = {c.name: c for c in globalnet.overlap_checks(on, source="test")}
    assert by["overlapping CIDRs without Globalnet"].verdict is Verdict.PASS
    assert by["global CIDRs overlap"].verdict is Verdict.PASS
    off = [_member("a", "242.1.0.0/16"), _member("b", None)]
    by = {c.name: c for c in globalnet.overlap_checks(off, source="test")}
    assert by["overlapping CIDRs without Globalnet"].verdict is Verdict.FAIL
    assert "no Globalnet on b" in by["overlapping CIDRs without Globalnet"].message


def test_overlapping_global_cidrs_fail_naming_both() -> None:
    clash = [_member("a", "242.1.0.0/16"), _member("b", "242.1.128.0/17")]
    by = {c.name: c for c in globalnet.overlap_checks(clash, source="test")}
    assert by["global CIDRs overlap"].verdict is Verdict.FAIL
    assert by["global CIDRs overlap"].message == "a/b: 242.1.0.0/16 ~ 242.1.128.0/17"


def _daemonset(desired: int, ready: int) -> dict[str, object]:
    from deploy import manifests

    return {"kind": "DaemonSet", "metadata": {"name": manifests.GATEWAY_DAEMONSET,
                                              "namespace": "submariner-operator"},
            "spec": {"selector": {"matchLabels": {"app": "gw"}}, "template": {"spec": {
                "containers": [{"name": "gateway-engine"}, {"name": "globalnet"}]}}},
            "status": {"desiredNumberScheduled": desired, "numberReady": ready}}


def _pod(reason: str | None) -> dict[str, object]:
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    return {"metadata": {"name": "gw-1", "labels": {"app": "gw"}},
            "status": {"containerStatuses": [{"name": "globalnet", "state": state,
                                              "restartCount": 7}]}}


def test_a_gateway_daemonset_is_judged_by_ready_pods_placement_and_crashes() -> None:
    from deploy import manifests
    from ops.diagnose import deployment

    def verdicts(ds: dict[str, object], pods: list[dict[str, object]], gateways: int
                 ) -> list[tuple[str, Verdict]]:
        return [(c.name, c.verdict) for c in deployment.workload_check(
            manifests.GATEWAY_DAEMONSET, ds, pods, cluster="c1", gateway_nodes=gateways)]

    what = f"DaemonSet {manifests.GATEWAY_DAEMONSET}"
    assert verdicts(_daemonset(1, 1), [_pod(None)], 1) == [(what, Verdict.PASS)]
    assert verdicts(_daemonset(2, 1), [_pod(None)], 2) == [(what, Verdict.FAIL)]
    assert verdicts(_daemonset(1, 1), [_pod(None)], 2) == [(f"{what} placement", Verdict.FAIL),
                                                           (what, Verdict.PASS)]
    [crash] = deployment.workload_check(manifests.GATEWAY_DAEMONSET, _daemonset(1, 0),
                                        [_pod("CrashLoopBackOff")], cluster="c1")
    assert crash.verdict is Verdict.FAIL
    assert "gw-1/globalnet (CrashLoopBackOff, 7 restarts)" in crash.message
    assert verdicts(_daemonset(0, 0), [], 0)[0][1] is Verdict.FAIL
