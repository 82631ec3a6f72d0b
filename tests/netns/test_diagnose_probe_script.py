"""The script `gnctl diagnose firewall`'s probe pod runs on a gateway node
(ops/diagnose/podaccess.py), run here in a namespace of the test's own against a
real `inet globalnet` table: what it reports missing is what the kernel lacks.

Addresses: 242.0.0.0/24 global IPs, 10.96.1.0/24 ClusterIPs; only inside the
test's namespace, whose table is gone with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import netns
from ops.diagnose.podaccess import SCRIPT

pytestmark = [pytest.mark.privileged]

TABLE = """table inet globalnet {
  map ingress-ips {
    type ipv4_addr : ipv4_addr
    elements = { 242.0.0.5 comment "default/web" : 10.96.1.2 }
  }
  map ingress-ports {
    type ipv4_addr . inet_proto . inet_service : ipv4_addr
    elements = { 242.0.0.6 . tcp . 80 comment "default/shop" : 10.96.1.3 }
  }
}
"""


def probe(ns: str, expected: list[str], out: Path, limit: int = 100) -> dict[str, object]:
    subprocess.run(netns.exec_argv(ns, [sys.executable, "-c", SCRIPT, json.dumps(expected),
                                        str(limit), str(out)]), check=True, timeout=30)
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_the_probe_reports_the_ips_without_a_mapping(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    ns = make_netns("dprobe")
    out = tmp_path / "report.json"
    assert probe(ns, ["242.0.0.5"], out) == {"present": False, "mappings": 0, "missing": []}
    subprocess.run(netns.exec_argv(ns, ["nft", "-f", "-"]), input=TABLE, text=True,
                   check=True, timeout=30)
    report = probe(ns, ["242.0.0.5", "242.0.0.6", "242.0.0.7", "242.0.0.8"], out, limit=1)
    assert report == {"present": True, "mappings": 2, "missing": ["242.0.0.7"],
                      "missing_count": 2}
