"""datapath.netlink's ``IPRoute`` - pyroute2 without its package ``__init__`` - in a
real namespace: the route table converges and route events arrive as with the full
library. In a child process: this one (lab.netns) has imported pyroute2 in full."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lab import netns

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys, deferred_import
from datapath.routes import Route, RouteEvents, RouteTable
from datapath.netlink import IPRoute
ns = sys.argv[1]
assert deferred_import.is_deferred("pyroute2")
events = RouteEvents(ns)
table = RouteTable(ns)
result = table.converge({Route("242.1.0.0/16", "10.9.0.2")})
assert [r.dst for r in result.added] == ["242.1.0.0/16"], result
assert table.installed() == {Route("242.1.0.0/16", "10.9.0.2")}
assert events.changed(5.0)  # the kernel announced our new route
with IPRoute(netns=ns) as ipr:
    links = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
assert "d0" in links, links
assert table.clear() == 1
loaded = [m for m in sys.modules if m.startswith(("pyroute2.ndb", "pyroute2.ipdb"))]
assert deferred_import.is_deferred("pyroute2") and not loaded, loaded
events.close()
print("ok")
"""


def test_lean_iproute_converges_routes_in_a_namespace(
        make_netns: Callable[[str], str]) -> None:
    ns = make_netns("lean")
    netns.run(ns, ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
    netns.run(ns, ["ip", "addr", "add", "10.9.0.1/24", "dev", "d0"])
    netns.run(ns, ["ip", "link", "set", "d1", "up"])
    netns.run(ns, ["ip", "link", "set", "d0", "up"])
    out = subprocess.run([sys.executable, "-c", CHILD, ns], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
    assert "242.1.0.0/16" not in netns.run(ns, ["ip", "route", "show"])
