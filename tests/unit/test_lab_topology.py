"""The lab's address plan: overlapping by design, validated before anything is built.

Address conventions: pods 10.244.0.0/16 (node n: 10.244.n.0/24), services
10.96.0.0/16, nodes 172.18.0.0/24 (control plane .2, node n .10+n), underlay
198.18.0.0/24 (broker .2, gateway of cluster i .10+i).
"""

from __future__ import annotations

import pytest

from lab.topology import LabSpec, TopologyError, plan_lab


def test_every_cluster_gets_the_same_pod_service_and_node_addresses() -> None:
    plan = plan_lab(LabSpec(clusters=3, nodes=2))
    first, *others = plan.clusters
    for other in others:
        assert other.pod_cidr == first.pod_cidr == "10.244.0.0/16"
        assert other.service_cidr == first.service_cidr == "10.96.0.0/16"
        assert [n.ip for n in other.nodes] == [n.ip for n in first.nodes]
        assert [n.pod_cidr for n in other.nodes] == ["10.244.0.0/24", "10.244.1.0/24"]


def test_only_gateways_and_broker_have_distinct_underlay_addresses() -> None:
    plan = plan_lab(LabSpec(clusters=3, nodes=3))
    gateways = [c.gateway.underlay_ip for c in plan.clusters]
    assert gateways == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert plan.broker_ip == "198.18.0.2"
    assert all(n.underlay_ip is None for c in plan.clusters for n in c.nodes[1:])


def test_names_fit_the_lab_prefix_and_host_ports_are_consecutive() -> None:
    plan = plan_lab(LabSpec(name="t1", clusters=2, nodes=1, api_port_base=20000))
    names = [plan.underlay_netns, plan.broker_netns] + [
        ns for c in plan.clusters for ns in (c.cp_netns, *(n.netns for n in c.nodes))
    ]
    assert all(n and n.startswith("gn-t1-") for n in names)
    assert len(set(names)) == len(names)
    assert plan.broker_host_api_port == 20000
    assert [c.host_api_port for c in plan.clusters] == [20001, 20002]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"pod_cidr": "10.244.0.0/33"}, "invalid pod CIDR", id="bad-prefix"),
        pytest.param({"pod_cidr": "10.244.0.0"}, "prefix length is missing", id="no-prefix"),
        pytest.param({"service_cidr": "banana"}, "invalid service CIDR", id="not-an-address"),
        pytest.param({"pod_cidr": "10.244.1.0/16"}, "host bits set", id="host-bits"),
        pytest.param({"service_cidr": "10.244.128.0/20"}, "overlaps", id="overlap"),
        pytest.param({"nodes": 0}, "--nodes must be between", id="zero-nodes"),
        pytest.param({"clusters": 0}, "--clusters must be between", id="zero-clusters"),
        pytest.param({"name": "Bad_Name"}, "invalid lab name", id="bad-name"),
        pytest.param({"pod_cidr": "10.244.0.0/24", "nodes": 2}, "too small", id="tiny-pods"),
        pytest.param({"api_port_base": 80}, "out of range", id="low-port"),
        pytest.param({"globalnet": True, "datapath": "bpf"}, "unknown --datapath 'bpf'",
                     id="unknown-datapath"),
        pytest.param({"datapath": "ebpf"}, "needs --globalnet", id="ebpf-without-globalnet"),
    ],
)
def test_bad_input_is_refused_with_a_one_line_reason(
    changes: dict[str, object], message: str
) -> None:
    spec = LabSpec(**changes)  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match=message) as info:
        plan_lab(spec)
    assert "\n" not in str(info.value)


def test_either_backend_is_accepted_with_globalnet() -> None:
    for datapath in ("nftables", "ebpf"):
        assert plan_lab(LabSpec(globalnet=True, datapath=datapath)).spec.datapath == datapath
