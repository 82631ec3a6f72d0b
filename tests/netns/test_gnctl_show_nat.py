"""`gnctl show nat` reads back what the nftables and eBPF backends installed.

Address conventions: global CIDR 242.0.0.0/24; a ClusterIP 10.96.0.10.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from datapath.nftables.backend import NftablesDatapath
from globalnet.intent import GlobalIP, IngressMapping, IngressTarget, NatIntent

pytestmark = pytest.mark.privileged


def test_show_nat_lists_the_kernels_mappings(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("gw")
    intent = NatIntent.build(
        cluster_id="east", global_cidr="242.0.0.0/24", local_cidrs=["10.96.0.0/16"],
        remote_global_cidrs=["242.1.0.0/24"],
        ingress=[IngressMapping(GlobalIP("242.0.0.7"), "10.96.0.10",
                                IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/web")],
    )
    backend = NftablesDatapath(netns=ns)
    try:
        backend.apply(intent)
        out = subprocess.run([sys.executable, "-m", "cli.main", "show", "nat", "--netns", ns,
                              "-o", "json"], capture_output=True, text=True, check=True,
                             timeout=60).stdout
        table = subprocess.run([sys.executable, "-m", "cli.main", "show", "nat", "--netns", ns],
                               capture_output=True, text=True, check=True, timeout=60).stdout
    finally:
        backend.close()
    rows = json.loads(out)
    assert any(r["global_ip"] == "242.0.0.7" and r["local"] == "10.96.0.10"
               and r["owner"] == "GlobalIngressIP app/web" for r in rows), rows
    assert f"ip netns exec {ns} nft list table inet globalnet" in table


def test_show_nat_ebpf_lists_mappings_with_their_counters(
        make_netns: Callable[[str], str]) -> None:
    from datapath.ebpf import EbpfDatapath
    from datapath.ebpf import names as en
    from tests.netns import bpf_pkt
    from tests.netns.conformance import ebpf_bpffs

    ns = make_netns("gw")
    intent = NatIntent.build(
        cluster_id="east", global_cidr="242.0.0.0/24", local_cidrs=["10.96.0.0/16"],
        remote_global_cidrs=["242.1.0.0/24"],
        ingress=[IngressMapping(GlobalIP("242.0.0.7"), "10.96.0.10",
                                IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/web")],
    )
    backend = EbpfDatapath(netns=ns, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent)
        # Two packets through the real ingress program: the mapping counts them.
        fd = backend.program_fd(en.FROM_TUNNEL)
        for _ in range(2):
            res = bpf_pkt.run_prog(fd, bpf_pkt.tcp("242.1.0.9", "242.0.0.7", 40000, 80))
            assert bpf_pkt.parse(res.ip).dst == "10.96.0.10"
        argv = [sys.executable, "-m", "cli.main", "show", "nat", "--netns", ns, "--datapath",
                "ebpf", "--bpffs", str(ebpf_bpffs())]
        out = subprocess.run([*argv, "-o", "json"], capture_output=True, text=True, check=True,
                             timeout=60).stdout
        table = subprocess.run(argv, capture_output=True, text=True, check=True,
                               timeout=60).stdout
    finally:
        backend.cleanup()
    data = json.loads(out)
    assert data["mappings"] == [{"global_ip": "242.0.0.7", "local": "10.96.0.10", "ports": "all",
                                 "packets_in": 2, "bytes_in": 2 * 54, "packets_out": 0,
                                 "bytes_out": 0}], data
    assert "242.0.0.7" in table and "1 mappings" in table


def test_ebpf_counters_are_prometheus_metrics(make_netns: Callable[[str], str]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from datapath.ebpf import EbpfDatapath
    from datapath.ebpf import names as en
    from datapath.ebpf.metrics import EbpfCollector
    from tests.netns import bpf_pkt
    from tests.netns.conformance import ebpf_bpffs

    ns = make_netns("gw")
    intent = NatIntent.build(
        cluster_id="east", global_cidr="242.0.0.0/24", local_cidrs=["10.96.0.0/16"],
        remote_global_cidrs=["242.1.0.0/24"],
        ingress=[IngressMapping(GlobalIP("242.0.0.7"), "10.96.0.10",
                                IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP app/web")],
    )
    backend = EbpfDatapath(netns=ns, bpffs=ebpf_bpffs())
    try:
        backend.apply(intent)
        fd = backend.program_fd(en.FROM_TUNNEL)
        bpf_pkt.run_prog(fd, bpf_pkt.tcp("242.1.0.9", "242.0.0.7", 40000, 80))
        bpf_pkt.run_prog(fd, bpf_pkt.tcp("242.1.0.9", "242.0.0.8", 40000, 80))  # unmapped
        registry = CollectorRegistry()
        registry.register(EbpfCollector(netns=ns, bpffs=ebpf_bpffs()))
        text = generate_latest(registry).decode()
    finally:
        backend.cleanup()
    assert ('globalnet_ebpf_mapping_packets_total{direction="in",global_ip="242.0.0.7",'
            'local="10.96.0.10",ports="all"} 1.0') in text, text
    assert 'globalnet_ebpf_drops_total{reason="unmapped"} 1.0' in text
