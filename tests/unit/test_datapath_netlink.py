"""datapath.netlink: the route agent and the gateway engine get pyroute2's ``IPRoute``
without pyroute2's package ``__init__`` (every netlink family it has: ~6 MB RSS per
process), and pyroute2 still works in full for code that asks for more. The deferral
itself is deferred_import's, shared with kube.lean (tests/unit/test_kube_lean.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What pyroute2/__init__.py imports and the agents never use.
HEAVY = ["pyroute2.ndb", "pyroute2.ipdb", "pyroute2.conntrack", "pyroute2.ipset",
         "pyroute2.ipvs", "pyroute2.iwutil", "pyroute2.devlink", "pyroute2.ethtool",
         "pyroute2.plan9", "pyroute2.wiset", "pyroute2.nslink",
         "pyroute2.netlink.nl80211", "pyroute2.netlink.generic.wireguard",
         "pyroute2.netlink.taskstats", "pyroute2.netlink.uevent"]


def _run(code: str, *, cwd: Path = REPO, pythonpath: str | None = None) -> str:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("module", ["gateway.routeagent", "gateway.engine", "datapath.vxlan"])
def test_agents_do_not_run_pyroute2s_init(module: str) -> None:
    out = _run(f"import sys, {module}, kube.client\n"
               "import deferred_import\n"
               f"heavy = {HEAVY!r}\n"
               "loaded = sorted({m for m in sys.modules for h in heavy\n"
               "                 if m == h or m.startswith(h + '.')})\n"
               "print(deferred_import.is_deferred('pyroute2'), loaded)")
    assert out == "True []", f"{module}: (deferred, loaded) = {out}"


def test_pyroute2_still_works_in_full_on_demand() -> None:
    out = _run("import sys, deferred_import\n"
               "from datapath.netlink import IPRoute, RTMGRP_IPV4_ROUTE\n"
               "import pyroute2\n"
               "from pyroute2 import netns\n"  # a submodule: only it is imported
               "assert deferred_import.is_deferred('pyroute2')\n"
               "assert 'pyroute2.ndb' not in sys.modules\n"
               "assert callable(netns.create)\n"
               "from pyroute2 import IPRoute as library_iproute, NDB\n"  # runs __init__
               "assert library_iproute is IPRoute, (library_iproute, IPRoute)\n"
               "assert NDB.__name__ == 'NDB' and 'pyroute2.ndb' in sys.modules\n"
               "assert pyroute2.__version__ and not deferred_import.is_deferred('pyroute2')\n"
               "from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE as g\n"
               "assert g == RTMGRP_IPV4_ROUTE\n"
               "print('ok')")
    assert out == "ok"


def test_pyroute2_imported_first_is_left_alone() -> None:
    out = _run("import pyroute2, deferred_import, datapath.netlink\n"
               "print(type(pyroute2).__name__, deferred_import.is_deferred('pyroute2'),\n"
               "      datapath.netlink.IPRoute is pyroute2.IPRoute)")
    assert out == "module False True"


def test_deferred_package_runs_its_init_once_on_the_first_name_it_binds(
        tmp_path: Path) -> None:
    pkg = tmp_path / "gn_fake"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import sys\n"
        "sys.modules['gn_fake_runs'] = sys.modules.get('gn_fake_runs', 0) + 1\n"
        "from gn_fake.heavy import Heavy\n"
        "from . import light\n"
        "VERSION = '1'\n")
    (pkg / "light.py").write_text("LIGHT = 1\n")
    (pkg / "heavy.py").write_text("class Heavy: pass\n")
    (pkg / "broken.py").write_text("raise ImportError('broken')\n")
    out = _run("import sys, deferred_import\n"
               "deferred_import.defer('gn_fake')\n"
               "deferred_import.defer('gn_fake')\n"  # idempotent
               "from gn_fake import light\n"
               "import gn_fake.light\n"
               "assert light.LIGHT == 1 and 'gn_fake_runs' not in sys.modules\n"
               "assert 'gn_fake.heavy' not in sys.modules\n"
               "import gn_fake\n"
               "assert not hasattr(gn_fake, '__wrapped__')\n"  # a probe runs nothing
               "assert deferred_import.is_deferred('gn_fake')\n"
               "assert gn_fake.VERSION == '1' and sys.modules['gn_fake_runs'] == 1\n"
               "assert gn_fake.Heavy.__name__ == 'Heavy' and sys.modules['gn_fake_runs'] == 1\n"
               "assert not deferred_import.is_deferred('gn_fake')\n"
               "try:\n"
               "    gn_fake.missing\n"
               "except AttributeError:\n"
               "    pass\n"
               "else:\n"
               "    raise AssertionError('missing')\n"
               "deferred_import.defer('gn_not_installed')\n"
               "assert 'gn_not_installed' not in sys.modules\n"
               "print('ok')", pythonpath=f"{tmp_path}:{REPO}")
    assert out == "ok"


def test_the_route_agents_vip_table_needs_neither_libnftables_nor_the_backend() -> None:
    """The route agent on every node programs its VIP table through the `nft` CLI:
    neither the nftables backend's package (rich, the renderer) nor libnftables'
    binding is loaded by the module that does it."""
    out = _run("import sys, gateway.routeagent, gateway.viptable\n"
               "from datapath.nftables.clustersetip import VipTable\n"
               "table = VipTable(None)\n"
               "assert table._commands.cli\n"
               "print(sorted(m for m in sys.modules if m in ('nftables', 'rich')\n"
               "             or m.startswith(('rich.', 'datapath.nftables.backend'))))")
    assert out == "[]", out
