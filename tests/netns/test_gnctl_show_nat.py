"""`gnctl show nat` reads back what the nftables backend installed.

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
